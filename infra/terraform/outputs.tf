output "sagemaker_role_arn" {
  description = "params.yaml: sagemaker.role_arn"
  value       = aws_iam_role.sagemaker.arn
}

output "artifacts_bucket" {
  description = "params.yaml: sagemaker.bucket (and the DVC remote)"
  value       = aws_s3_bucket.artifacts.id
}

output "kms_key_arn" {
  description = "params.yaml: sagemaker.kms_key_id"
  value       = aws_kms_key.data.arn
}

output "image_repositories" {
  value = { for k, r in aws_ecr_repository.images : k => r.repository_url }
}

output "pipeline_pods_role_arn" {
  description = "Annotate the defectops-pipeline service account with it (infra/k8s/kfp)"
  value       = aws_iam_role.pipeline_pods.arn
}
