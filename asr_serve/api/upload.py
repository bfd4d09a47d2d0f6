"""Read a multipart upload in memory, enforcing the size limit while the body streams in.

Starlette's own multipart parser does the parsing. Two things are changed around it: the
byte stream is counted and cut off as soon as it passes the limit (so a 2 GB upload costs
no more than the limit in memory and time), and the file part never rolls over to a
temporary file on disk (uploaded audio is never written to disk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from asr_serve.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

#: Room for the multipart framing and the small text fields beside the file.
FORM_OVERHEAD_BYTES = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Upload:
    """The parsed form: the audio bytes and the other fields (the file's name and declared
    type are not read: the decoder judges the bytes themselves)."""

    data: bytes
    fields: dict[str, str | list[str]]


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser with the spool threshold above any accepted upload."""

    def __init__(self, request: Request, stream: AsyncIterator[bytes], limit: int) -> None:
        super().__init__(
            request.headers,
            stream,
            max_files=1,
            max_fields=32,
            max_part_size=MAX_FIELD_BYTES,
        )
        self.spool_max_size = limit + FORM_OVERHEAD_BYTES


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"upload exceeds the limit of {limit} bytes ({limit / 1e6:.1f} MB)", param="file"
    )


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit - FORM_OVERHEAD_BYTES)
        yield chunk


async def read_upload(request: Request, *, max_bytes: int) -> Upload:
    """Parse ``multipart/form-data`` with one ``file`` part; raise the API's errors."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"expected multipart/form-data with a 'file' field, got {content_type or 'none'!r}"
        )
    limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_bytes)

    parser = _InMemoryMultiPartParser(request, _limited(request, limit), max_bytes)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequestError(f"malformed multipart body: {exc.message}") from None
    except ClientDisconnect:
        raise InvalidRequestError("client disconnected during upload") from None

    fields: dict[str, str | list[str]] = {}
    upload: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file" and upload is None:
                upload = value
            else:
                await value.close()
            continue
        if key == "file":
            raise InvalidRequestError("the 'file' field must be a file upload", param="file")
        name = key.removesuffix("[]")
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = [value] if key.endswith("[]") else value
    if upload is None:
        raise InvalidRequestError("the 'file' field is required", param="file")
    try:
        data = await upload.read()
    finally:
        await upload.close()
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return Upload(data=data, fields=fields)
