# Schedule -> start the training pipeline; model package approved -> start the deploy pipeline.
data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "events" {
  name               = "${var.name}-events"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "events" {
  statement {
    actions = ["sagemaker:StartPipelineExecution"]
    resources = ["${local.sm_arn}:pipeline/${var.pipeline_name}",
    "${local.sm_arn}:pipeline/${var.deploy_pipeline_name}"]
  }
}

resource "aws_iam_role_policy" "events" {
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

resource "aws_cloudwatch_event_rule" "schedule" {
  name                = "${var.name}-scheduled-training"
  description         = "Retrain on a schedule (drift alerts start runs too: components/monitor/retrain.py)"
  schedule_expression = var.schedule
}

resource "aws_cloudwatch_event_target" "schedule" {
  rule     = aws_cloudwatch_event_rule.schedule.name
  arn      = "${local.sm_arn}:pipeline/${var.pipeline_name}"
  role_arn = aws_iam_role.events.arn
  sagemaker_pipeline_target {
    pipeline_parameter_list {
      name  = "Trigger"
      value = "schedule"
    }
  }
}

resource "aws_cloudwatch_event_rule" "approved" {
  name        = "${var.name}-model-approved"
  description = "A person approved a model package: deploy it"
  event_pattern = jsonencode({
    source      = ["aws.sagemaker"]
    detail-type = ["SageMaker Model Package State Change"]
    detail = {
      ModelPackageGroupName = [var.model_package_group]
      ModelApprovalStatus   = ["Approved"]
    }
  })
}

resource "aws_cloudwatch_event_target" "approved" {
  rule     = aws_cloudwatch_event_rule.approved.name
  arn      = "${local.sm_arn}:pipeline/${var.deploy_pipeline_name}"
  role_arn = aws_iam_role.events.arn
  sagemaker_pipeline_target {
    pipeline_parameter_list {
      name  = "ModelPackageArn"
      value = "$.detail.ModelPackageArn"
    }
  }
}
