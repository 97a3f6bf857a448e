"""Deploy an approved SageMaker model package to a real-time endpoint (create, or update in place).

The cloud counterpart of `defectops deploy` + `serve`: only an *Approved* package is deployed,
and an existing endpoint is updated to a new endpoint config, which SageMaker rolls out
blue/green without dropping traffic.
"""

from __future__ import annotations

import time

from defectops.errors import RefusedError


def deploy_model_package(sm, endpoint_name: str, model_package_arn: str, role_arn: str,
                         instance_type: str = "ml.c5.xlarge", instance_count: int = 1) -> dict:
    from botocore.exceptions import ClientError

    package = sm.describe_model_package(ModelPackageName=model_package_arn)
    if package["ModelApprovalStatus"] != "Approved":
        raise RefusedError(f"{model_package_arn} is {package['ModelApprovalStatus']}; only Approved model "
                           "packages are deployed (defectops registry approve ... --backend sagemaker)")
    stamp = time.strftime("%Y%m%d%H%M%S")
    version = package.get("ModelPackageVersion", "x")
    model_name = f"{endpoint_name}-v{version}-{stamp}"[:63]
    sm.create_model(ModelName=model_name, ExecutionRoleArn=role_arn,
                    Containers=[{"ModelPackageName": model_package_arn}])
    config_name = f"{endpoint_name}-cfg-v{version}-{stamp}"[:63]
    sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[{
        "VariantName": "champion", "ModelName": model_name, "InitialInstanceCount": instance_count,
        "InstanceType": instance_type}])
    try:
        sm.describe_endpoint(EndpointName=endpoint_name)
        exists = True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        exists = False
    if exists:
        sm.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    else:
        sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    return {"endpoint": endpoint_name, "action": "updated" if exists else "created", "model": model_name,
            "endpoint_config": config_name, "model_package": model_package_arn}
