# Least privilege: the SageMaker execution role reads/writes only our bucket prefix, pulls only our
# images, uses only our key; pipeline pods get their own role through IRSA.
data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker-execution"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  sm_arn     = "arn:${local.partition}:sagemaker:${var.region}:${local.account}"
  bucket_arn = aws_s3_bucket.artifacts.arn
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ArtifactsBucket"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "PullOurImages"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [for r in aws_ecr_repository.images : r.arn]
  }
  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this API has no resource-level permissions
  }
  statement {
    sid = "PipelineJobs"
    actions = ["sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob", "sagemaker:CreateHyperParameterTuningJob",
      "sagemaker:DescribeTrainingJob", "sagemaker:DescribeProcessingJob", "sagemaker:DescribeHyperParameterTuningJob",
      "sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags",
      # The register step (first run: creates the group) and the champion the gate and warm starts read.
    "sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup", "sagemaker:ListModelPackages"]
    resources = ["${local.sm_arn}:training-job/*", "${local.sm_arn}:processing-job/*",
      "${local.sm_arn}:hyper-parameter-tuning-job/*", "${local.sm_arn}:model-package/${var.model_package_group}/*",
    "${local.sm_arn}:model-package-group/${var.model_package_group}"]
  }
  statement {
    sid       = "PassOnlyThisRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
  statement {
    sid       = "JobLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account}:log-group:/aws/sagemaker/*"]
  }
  statement {
    sid       = "JobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permissions; limited by namespace below
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/*"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

# Pipeline pods (Kubeflow) read and write the artifacts bucket through IRSA; nothing else.
resource "aws_iam_openid_connect_provider" "eks" {
  url             = aws_eks_cluster.main.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"]
}

data "aws_iam_policy_document" "pipeline_pods_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(aws_iam_openid_connect_provider.eks.url, "https://", "")}:sub"
      values   = ["system:serviceaccount:kubeflow:defectops-pipeline"]
    }
  }
}

resource "aws_iam_role" "pipeline_pods" {
  name               = "${var.name}-pipeline-pods"
  assume_role_policy = data.aws_iam_policy_document.pipeline_pods_assume.json
}

data "aws_iam_policy_document" "pipeline_pods" {
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:ListBucket"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
  }
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "pipeline_pods" {
  role   = aws_iam_role.pipeline_pods.id
  policy = data.aws_iam_policy_document.pipeline_pods.json
}
