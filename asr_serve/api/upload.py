"""Read a multipart upload in memory, enforcing its limits while the body streams in.

Starlette's own multipart parser does the parsing. Around it, the byte stream is counted
and cut off as soon as it passes the size limit (so a 2 GB upload costs no more than the
limit in memory and time), timed (a body that takes too long in all, or stalls between two
parts, is cut off with 408), and charged to the replica's :class:`UploadBudget`; the file
part never rolls over to a temporary file on disk (uploaded audio is never written to disk).

Neither uvicorn (Serve's HTTP server) nor Serve bounds the time a client takes to send a
body, so the bounds are here, where the body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from asr_serve.config import LimitsConfig
from asr_serve.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    UploadBudgetError,
)
from asr_serve.serving.requests import MAX_KNOWN_SPEAKERS, FieldValue, Upload

#: Room for the multipart framing and the small text fields beside the file.
FORM_OVERHEAD_BYTES = 256 * 1024
#: Any text field but a reference clip.
MAX_FIELD_BYTES = 64 * 1024
#: The field of the diarizing request's reference clips (data URLs): up to
#: ``MAX_KNOWN_SPEAKERS`` of them, each up to :func:`reference_field_bytes`.
REFERENCE_FIELD = "known_speaker_references"


_REFERENCE_HINT = " (a reference clip of at most limits.max_reference_bytes of audio)"


def reference_field_bytes(limits: LimitsConfig) -> int:
    """A data URL of ``max_reference_bytes`` of audio: base64, and its ``data:`` header."""
    return -(-limits.max_reference_bytes // 3) * 4 + 256


def form_limit(limits: LimitsConfig) -> int:
    """The most body a request may send: the file, the text fields, the reference clips."""
    return (
        limits.max_upload_bytes
        + FORM_OVERHEAD_BYTES
        + MAX_KNOWN_SPEAKERS * reference_field_bytes(limits)
    )


#: ``name[key]``: one key of an object field, as the ``openai`` client sends
#: ``chunking_strategy={"type": "server_vad", ...}`` in a form.
_OBJECT_KEY = re.compile(r"^(\w+)\[(\w+)\]$")


def _add_field(fields: dict[str, FieldValue], key: str, value: str) -> None:
    if (match := _OBJECT_KEY.match(key)) is not None:
        name, member = match.groups()
        target = fields.setdefault(name, {})
        if not isinstance(target, dict):
            raise InvalidRequestError(f"{name!r} is given both as a value and as an object")
        target[member] = value
        return
    name = key.removesuffix("[]")
    previous = fields.get(name)
    if previous is None:
        fields[name] = [value] if key.endswith("[]") else value
    elif isinstance(previous, dict):
        raise InvalidRequestError(f"{name!r} is given both as a value and as an object")
    else:
        fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser with the spool threshold above any accepted upload, and a size
    bound per text field: 64 KiB, except up to four reference clips of their own bound."""

    def __init__(
        self, request: Request, stream: AsyncIterator[bytes], limits: LimitsConfig
    ) -> None:
        self.reference_bytes = reference_field_bytes(limits)
        super().__init__(
            request.headers,
            stream,
            max_files=1,
            max_fields=32,
            max_part_size=max(MAX_FIELD_BYTES, self.reference_bytes),
        )
        self.spool_max_size = form_limit(limits)
        self.max_file_bytes = limits.max_upload_bytes
        self._file_bytes = 0
        self._references = 0
        self._counted: object = None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is not None:
            # The body's bound has room for reference clips; the file gets none of it.
            self._file_bytes += end - start
            if self._file_bytes > self.max_file_bytes:
                raise _too_large(self.max_file_bytes)
        else:
            name = part.field_name.removesuffix("[]")
            cap = self.reference_bytes if name == REFERENCE_FIELD else MAX_FIELD_BYTES
            if len(part.data) + end - start > cap:
                hint = _REFERENCE_HINT if name == REFERENCE_FIELD else ""
                raise MultiPartException(f"field {name!r} is over {cap // 1024} KiB{hint}")
            if name == REFERENCE_FIELD and self._counted is not part:
                self._counted = part
                self._references += 1
                if self._references > MAX_KNOWN_SPEAKERS:
                    raise MultiPartException(
                        f"at most {MAX_KNOWN_SPEAKERS} {REFERENCE_FIELD} fields are taken"
                    )
        super().on_part_data(data, start, end)


class UploadBudget:
    """What one ingress replica may be receiving at once: uploads, and their bytes.

    Serve would queue a request past the replica's ``max_ongoing_requests`` in its router,
    where, with every slot held by a slow upload, it waits until one times out; counted
    here instead, an upload past ``max_uploads`` is refused at once, and the replica keeps
    slots (and CPU: each part of a body is a call from the proxy) for everything else.
    Bytes are charged as they arrive, not as declared, so a client trickling its body
    holds almost none; past ``max_bytes`` an upload is refused before its body is read when
    the budget is already spent, or as soon as its next part would overdraw it. Refusals
    are 503 with Retry-After. One per replica; the event loop serialises the accounting.
    """

    #: What a refused client is told to wait: most uploads in progress end within seconds.
    RETRY_AFTER_S = 1.0

    def __init__(self, max_bytes: int, max_uploads: int) -> None:
        self.max_bytes = max_bytes
        self.max_uploads = max_uploads
        self.held = 0
        self.uploads = 0

    @contextlib.contextmanager
    def account(self) -> Iterator[Callable[[int], None]]:
        """``take(size)`` for one upload's chunks; all it took is returned when the block ends."""
        if self.uploads >= self.max_uploads or self.held >= self.max_bytes:
            raise self._refusal()
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            if self.held + size > self.max_bytes:
                raise self._refusal()
            self.held += size
            taken += size

        self.uploads += 1
        try:
            yield take
        finally:
            self.held -= taken
            self.uploads -= 1

    def _refusal(self) -> UploadBudgetError:
        return UploadBudgetError(
            "the server is receiving as many uploads as it can hold; retry shortly",
            retry_after_s=self.RETRY_AFTER_S,
        )


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"upload exceeds the limit of {limit} bytes ({limit / 1e6:.1f} MB)", param="file"
    )


async def _limited(
    request: Request, limits: LimitsConfig, take: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """The body's chunks, cut off past the size limit, the upload deadline or an idle gap."""
    limit = form_limit(limits)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.upload_timeout_s
    chunks = aiter(request.stream())
    seen = 0
    while True:
        overall = deadline - loop.time()
        try:
            async with asyncio.timeout(min(limits.upload_idle_timeout_s, overall)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _too_slow(limits, idle=overall > limits.upload_idle_timeout_s) from None
        except ClientDisconnect:
            raise
        except Exception as exc:
            # Serve's replica pulls the body from its proxy; when the client hangs up, the
            # pull can fail with Ray's TaskCancelledError instead of an http.disconnect.
            # Either way the body cannot be read: a disconnect, not our failure.
            raise ClientDisconnect(f"{type(exc).__name__}: {exc}") from None
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limits.max_upload_bytes)
        take(len(chunk))
        yield chunk


def _too_slow(limits: LimitsConfig, *, idle: bool) -> RequestTimeoutError:
    if idle:
        reason = f"no part of the upload arrived for {limits.upload_idle_timeout_s:g} s"
    else:
        reason = f"the upload was not complete within {limits.upload_timeout_s:g} s"
    return RequestTimeoutError(f"{reason}; send the file again", param="file")


async def read_upload(request: Request, *, limits: LimitsConfig, budget: UploadBudget) -> Upload:
    """Parse ``multipart/form-data`` with one ``file`` part; raise the API's errors."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError(
            f"expected multipart/form-data with a 'file' field, got {content_type or 'none'!r}"
        )
    max_bytes = limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > form_limit(limits):
        raise _too_large(max_bytes)

    with budget.account() as take:
        parser = _InMemoryMultiPartParser(request, _limited(request, limits, take), limits)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            param = REFERENCE_FIELD if REFERENCE_FIELD in exc.message else None
            raise InvalidRequestError(
                f"malformed multipart body: {exc.message}", param=param
            ) from None
        except ClientDisconnect:
            raise InvalidRequestError("client disconnected during upload") from None

    fields: dict[str, FieldValue] = {}
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
        _add_field(fields, key, value)
    if upload is None:
        raise InvalidRequestError("the 'file' field is required", param="file")
    try:
        data = await upload.read()
    finally:
        await upload.close()
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return Upload(data=data, fields=fields)
