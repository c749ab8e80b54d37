"""The predict API's CORS as synthesized: the Lambda allows exactly the origins the gateway's preflight lists."""

from __future__ import annotations

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from infra.api.infrastructure import PredictApi
from tests.infra.test_cdk_capture import _app

pytestmark = pytest.mark.slow

ORIGINS = ["https://app.example.org", "https://admin.example.org"]


def _api(origins: list[str] | None) -> Template:
    stack = Stack(_app(), "Serving")
    PredictApi(stack, "Api", endpoint_name="ep", endpoint_arn="arn:aws:sagemaker:us-east-1:1:endpoint/ep",
               memory_mb=256, throttle_rate=1, throttle_burst=1, api_key_required=False, max_records=100,
               cors_origins=origins)
    return Template.from_stack(stack)


def _lambda_env(template: Template) -> dict[str, str]:
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    return function["Properties"]["Environment"]["Variables"]


def test_several_origins_reach_the_lambda_each_by_name_not_as_any_origin() -> None:
    # With two origins the Lambda was told "*", answering every origin while the preflight allowed only these two
    template = _api(ORIGINS)
    env = _lambda_env(template)
    assert (env["CORS_ALLOW_ORIGIN"], env["CORS_EXTRA_ORIGINS"]) == (ORIGINS[0], ORIGINS[1]), env
    preflights = [m for m in template.find_resources("AWS::ApiGateway::Method").values()
                  if m["Properties"]["HttpMethod"] == "OPTIONS"]
    assert preflights and all(o in str(p) for p in preflights for o in ORIGINS), preflights


def test_without_origins_every_origin_is_allowed_as_before() -> None:
    env = _lambda_env(_api(None))
    assert (env["CORS_ALLOW_ORIGIN"], env["CORS_EXTRA_ORIGINS"]) == ("*", ""), env
