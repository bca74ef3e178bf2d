"""How S3 answers map to the spoke runtime's failures, on error responses as botocore
parses them (the shapes S3, MinIO and S3Proxy send). The real server covers the ones it
can produce (tests/integration/test_minio_client.py); throttling and 5xx are here."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from spokes.minio.client import map_botocore_error, map_client_error


def s3_error(code: str, status: int, message: str = "", headers: dict | None = None) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"RequestId": "17F1B2C3D4E5F607", "HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "expected_code"),
    [
        ("SlowDown", 503, "rate_limited"),
        ("ServiceUnavailable", 503, "s3_unavailable"),
        ("InternalError", 500, "s3_unavailable"),
        ("RequestTimeout", 400, "s3_unavailable"),
        ("XMinioServerNotInitialized", 503, "s3_unavailable"),
        ("", 502, "s3_unavailable"),
        ("TooManyRequests", 429, "rate_limited"),
    ],
)
def test_throttling_server_errors_and_timeouts_are_retryable(code, status, expected_code):
    mapped = map_client_error(s3_error(code, status), "put_object")
    assert type(mapped) is RetryableError and mapped.code == expected_code


def test_a_slow_down_with_retry_after_passes_the_hint_on():
    mapped = map_client_error(s3_error("SlowDown", 503, "Please reduce your request rate.", {"retry-after": "3"}), "put_object")
    assert mapped.retry_after == 3.0


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"])
def test_refused_credentials_require_reauthorization(code):
    error = s3_error(code, 403, "The request signature we calculated does not match")
    error.response["Error"]["StringToSign"] = "AWS4-HMAC-SHA256\n20261122T003109Z\nsecret-ish"
    mapped = map_client_error(error, "put_object")
    assert isinstance(mapped, ReauthorizationRequired)
    assert "StringToSign" not in str(mapped) and "AWS4" not in str(mapped) and "signature we calculated" not in str(mapped)


def test_a_bare_403_without_a_code_requires_reauthorization():
    assert isinstance(map_client_error(s3_error("", 403), "head_bucket"), ReauthorizationRequired)


@pytest.mark.parametrize(
    ("code", "status", "expected_code"),
    [
        ("NoSuchBucket", 404, "no_such_bucket"),
        ("NoSuchKey", 404, "no_such_key"),
        ("InvalidBucketName", 400, "invalid_bucket_name"),
        ("EntityTooLarge", 400, "entity_too_large"),
        ("BucketAlreadyExists", 409, "bucket_already_exists"),
        ("404", 404, "s3_http_404"),
    ],
)
def test_requests_that_will_fail_again_are_permanent(code, status, expected_code):
    mapped = map_client_error(s3_error(code, status), "put_object")
    assert type(mapped) is PermanentError and mapped.code == expected_code


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_connection_failures_and_timeouts_are_retryable(error):
    mapped = map_botocore_error(error, "put_object")
    assert type(mapped) is RetryableError and mapped.code == "unreachable"


def test_missing_credentials_require_reauthorization_and_bad_parameters_are_permanent():
    assert isinstance(map_botocore_error(NoCredentialsError(), "put_object"), ReauthorizationRequired)
    assert type(map_botocore_error(ParamValidationError(report="Bucket is required"), "put_object")) is PermanentError
