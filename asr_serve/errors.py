"""Errors that map to one HTTP status and one OpenAI-style error body.

They are raised anywhere in the graph (ingress, decoder, ASR replicas) and cross Ray
deployment handles intact: Ray re-raises a replica's exception in the caller as an
instance of the same class, so the ingress can render it without knowing where it came from.
Every constructor argument lives in ``args`` or ``__dict__`` so the classes pickle.
"""

from __future__ import annotations


class ASRServeError(Exception):
    """Base class: a request failed in a way the client should be told about."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_dict(self) -> dict:
        """The OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InternalError(ASRServeError):
    """Our own failure (a bug, a broken model), already logged with its traceback."""


class InvalidAudioError(ASRServeError):
    """The upload is not audio we can decode (corrupt, truncated, empty, no audio stream)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_audio"


class InvalidRequestError(ASRServeError):
    """A well-formed request asks for something this service or model cannot do."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationError(ASRServeError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFoundError(ASRServeError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFoundError(ASRServeError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(ASRServeError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLargeError(ASRServeError):
    """Upload bytes or audio duration over the configured limit."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaTypeError(ASRServeError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class InvalidParameterError(ASRServeError):
    status_code = 422
    error_type = "invalid_request_error"
    code = "invalid_parameter"


class RetryLaterError(ASRServeError):
    """Refused for now; the client should retry after ``retry_after_s`` (``Retry-After``)."""

    def __init__(
        self, message: str, *, param: str | None = None, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(message, param=param)
        self.retry_after_s = retry_after_s


class RateLimitError(RetryLaterError):
    """The client holds more than its share of a model's queue, or passed a limit of its
    own; others are still served. OpenAI's 429 body for a rate limit."""

    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"


class ClientLimitError(RateLimitError):
    """The client passed a limit of its own (``clients`` in the config), at the ingress."""


class OverloadedError(RetryLaterError):
    """Queues are full; the client should retry after ``retry_after_s``."""

    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class UploadBudgetError(OverloadedError):
    """The ingress replica is receiving as many upload bytes as it may hold at once."""


class InsufficientMemoryError(OverloadedError):
    """One item ran out of accelerator memory even alone (its batch was split down to it)."""

    code = "insufficient_memory"


class ModelNotReadyError(ASRServeError):
    status_code = 503
    error_type = "server_error"
    code = "model_not_ready"


class DeadlineExceededError(ASRServeError):
    status_code = 504
    error_type = "server_error"
    code = "deadline_exceeded"


class RequestTimeoutError(ASRServeError):
    """The client took too long to send its request (a slow or stalled upload)."""

    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


#: The API error for a bare HTTP status (routing and protocol errors raised by Starlette).
_BY_STATUS: dict[int, type[ASRServeError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidParameterError,
    429: RateLimitError,
    503: OverloadedError,
}


def error_for_status(status: int, message: str) -> ASRServeError:
    """The API error for ``status``; an unlisted status keeps its number and a generic code."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message)
    error = ASRServeError(message)
    error.status_code = status
    if status < 500:
        error.error_type, error.code = "invalid_request_error", "invalid_request"
    return error


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message tells the operator what to fix."""
