"""The UpdateEndpoint step of sagemaker-retrain-pipeline.json (a Lambda
function, Python 3 runtime, handler `sagemaker-update-endpoint.handler`
once deployed under that name).

It receives model_name, endpoint_name, instance_type and execution_id,
makes an endpoint configuration that serves the freshly trained model, and
creates the endpoint on the first run or updates it afterwards. SageMaker
keeps the old model serving until the new one is in service, so pipemedic's
InvokeEndpoint calls never see a gap (and fall back to the embedded forest
if they do). Needs sagemaker:CreateEndpointConfig, DescribeEndpoint,
CreateEndpoint and UpdateEndpoint on the endpoint and its configurations.
"""

import re

import boto3
from botocore.exceptions import ClientError

sagemaker = boto3.client("sagemaker")


def handler(event, _context):
    endpoint = event["endpoint_name"]
    suffix = re.sub(r"[^A-Za-z0-9-]", "-", event["execution_id"])
    config_name = f"{endpoint}-{suffix}"[:63].rstrip("-")
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": event["model_name"],
                "InstanceType": event["instance_type"],
                "InitialInstanceCount": 1,
            }
        ],
    )
    try:
        sagemaker.describe_endpoint(EndpointName=endpoint)
        exists = True
    except ClientError as e:
        if e.response["Error"]["Code"] != "ValidationException":
            raise
        exists = False
    if exists:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
    else:
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
    return {"endpoint_config": config_name}
