variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "name" {
  description = "Prefix of every resource."
  type        = string
  default     = "defectops"
}

variable "vpc_cidr" {
  type    = string
  default = "10.40.0.0/16"
}

variable "azs" {
  type    = list(string)
  default = ["eu-west-1a", "eu-west-1b"]
}

variable "eks_version" {
  type    = string
  default = "1.31"
}

variable "gpu_instance_types" {
  description = "Spot GPU node group for training (several types: more spot capacity pools)."
  type        = list(string)
  default     = ["g5.xlarge", "g5.2xlarge", "g6.xlarge"]
}

variable "pipeline_name" {
  description = "SageMaker pipeline started on schedule (see 'defectops pipeline run --engine sagemaker')."
  type        = string
  default     = "defectops-training"
}

variable "deploy_pipeline_name" {
  description = "SageMaker pipeline that deploys an approved model package ('defectops sagemaker deploy-endpoint')."
  type        = string
  default     = "defectops-deploy"
}

variable "schedule" {
  description = "When the training pipeline runs on its own (EventBridge cron)."
  type        = string
  default     = "cron(0 2 ? * SUN *)"
}

variable "model_package_group" {
  type    = string
  default = "defectops-detector"
}
