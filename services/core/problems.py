"""Errors as RFC 9457 problem+json, in Vietnamese first and English on request
(`Accept-Language: en`). Services add their own codes to `MESSAGES` next to the routes
that raise them."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"

# code -> (title, Vietnamese detail, English detail)
MESSAGES: dict[str, tuple[str, str, str]] = {
    "validation": ("Invalid input", "Dữ liệu gửi lên không hợp lệ.", "The request contains invalid fields."),
    "malformed_body": (
        "Bad Request",
        "Không đọc được dữ liệu gửi lên: nội dung phải là JSON hợp lệ.",
        "The request body could not be read: it must be valid JSON.",
    ),
    "unstorable_value": (
        "Unprocessable Content",
        "Có giá trị không thể lưu (quá lớn hoặc chứa ký tự không hợp lệ).",
        "A value cannot be stored (too large, or an invalid character).",
    ),
    "unauthenticated": ("Unauthorized", "Bạn cần đăng nhập để tiếp tục.", "Sign in to continue."),
    "invalid_token": (
        "Unauthorized",
        "Phiên đăng nhập không hợp lệ hoặc đã hết hạn.",
        "The session is invalid or has expired.",
    ),
    "forbidden": ("Forbidden", "Bạn không có quyền thực hiện thao tác này.", "You are not allowed to do this."),
    "not_found": ("Not Found", "Không tìm thấy.", "Not found."),
    "method_not_allowed": ("Method Not Allowed", "Phương thức không được hỗ trợ.", "Method not allowed."),
    "unavailable": (
        "Service Unavailable",
        "Hệ thống đang bận, vui lòng thử lại sau giây lát.",
        "The system is busy; please try again in a moment.",
    ),
    "internal": ("Internal Server Error", "Đã có lỗi ngoài ý muốn. Vui lòng thử lại.", "An unexpected error occurred."),
    "payload_too_large": ("Payload Too Large", "Tệp quá lớn (tối đa 10 MB).", "The file is too large (10 MB at most)."),
    # Uploaded tables (services/core/uploads.py); quiz and registration published
    # different codes for the same refusal, and clients rely on each.
    "unsupported_file": (
        "Unsupported Media Type",
        "Chỉ nhận tệp CSV (UTF-8) hoặc Excel (.xlsx).",
        "Only CSV (UTF-8) or Excel (.xlsx) files are accepted.",
    ),
    "unsupported_file_type": (
        "Unsupported Media Type",
        "Chỉ nhận tệp CSV (UTF-8) hoặc Excel (.xlsx).",
        "Only CSV (UTF-8) or Excel (.xlsx) files are accepted.",
    ),
    "unreadable_file": ("Unprocessable Content", "Không đọc được tệp tải lên.", "The uploaded file could not be read."),
}


RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code"})


class Problem(Exception):
    """Raise from a route: `raise Problem(409, "already_submitted", deadline_at=...)`."""

    def __init__(
        self, status: int, code: str, *, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(code)
        if clash := RESERVED_MEMBERS & extra.keys():
            raise ValueError(f"problem members {sorted(clash)} are set by Problem itself")
        self.status, self.code, self.detail, self.headers, self.extra = status, code, detail, headers or {}, extra


def wants_english(request: Request) -> bool:
    return request.headers.get("accept-language", "").lower().startswith("en")


def problem_response(request: Request, problem: Problem) -> Response:
    title, vi, en = MESSAGES.get(
        problem.code, MESSAGES["internal"] if problem.status >= 500 else ("Error", problem.code, problem.code)
    )
    body: dict[str, Any] = {
        "type": f"urn:hoithi:problem:{problem.code}",
        "title": title,
        "status": problem.status,
        "detail": problem.detail or (en if wants_english(request) else vi),
        "code": problem.code,
        **problem.extra,
    }
    if cid := request.headers.get("x-request-id"):
        body["instance"] = f"urn:hoithi:request:{cid}"
    return Response(
        orjson.dumps(body, default=str), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )
