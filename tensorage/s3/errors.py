"""S3 errors: each an exception class with the code, status and message S3 clients expect
(https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)."""

from __future__ import annotations

from ..errors import TensorageError


class S3Error(TensorageError):
    code = "InternalError"
    status = 500

    def __init__(self, message: str = "", resource: str = "") -> None:
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()
        self.resource = resource


class AccessDenied(S3Error):
    """Access Denied."""
    code, status = "AccessDenied", 403


class InvalidAccessKeyId(S3Error):
    """The AWS access key Id you provided does not exist in our records."""
    code, status = "InvalidAccessKeyId", 403


class SignatureDoesNotMatch(S3Error):
    """The request signature we calculated does not match the signature you provided. Check your key and signing method."""
    code, status = "SignatureDoesNotMatch", 403


class RequestTimeTooSkewed(S3Error):
    """The difference between the request time and the server's time is too large."""
    code, status = "RequestTimeTooSkewed", 403


class ExpiredPresignedUrl(S3Error):
    """Request has expired."""
    code, status = "AccessDenied", 403


class AuthorizationHeaderMalformed(S3Error):
    """The authorization header is malformed."""
    code, status = "AuthorizationHeaderMalformed", 400


class ContentSHA256Mismatch(S3Error):
    """The provided 'x-amz-content-sha256' header does not match what was computed."""
    code, status = "XAmzContentSHA256Mismatch", 400


class BadDigest(S3Error):
    """The Content-MD5 you specified did not match what we received."""
    code, status = "BadDigest", 400


class InvalidDigest(S3Error):
    """The Content-MD5 you specified is not valid."""
    code, status = "InvalidDigest", 400


class NoSuchBucket(S3Error):
    """The specified bucket does not exist."""
    code, status = "NoSuchBucket", 404


class NoSuchKey(S3Error):
    """The specified key does not exist."""
    code, status = "NoSuchKey", 404


class NoSuchUpload(S3Error):
    """The specified multipart upload does not exist."""
    code, status = "NoSuchUpload", 404


class BucketNotEmpty(S3Error):
    """The bucket you tried to delete is not empty."""
    code, status = "BucketNotEmpty", 409


class BucketAlreadyOwnedByYou(S3Error):
    """Your previous request to create the named bucket succeeded and you already own it."""
    code, status = "BucketAlreadyOwnedByYou", 409


class InvalidBucketName(S3Error):
    """The specified bucket is not valid."""
    code, status = "InvalidBucketName", 400


class KeyTooLong(S3Error):
    """Your key is too long."""
    code, status = "KeyTooLongError", 400


class InvalidRange(S3Error):
    """The requested range is not satisfiable."""
    code, status = "InvalidRange", 416


class EntityTooLarge(S3Error):
    """Your proposed upload exceeds the maximum allowed object size."""
    code, status = "EntityTooLarge", 400


class EntityTooSmall(S3Error):
    """Your proposed upload is smaller than the minimum allowed object size."""
    code, status = "EntityTooSmall", 400


class IncompleteBody(S3Error):
    """You did not provide the number of bytes specified by the Content-Length HTTP header."""
    code, status = "IncompleteBody", 400


class MissingContentLength(S3Error):
    """You must provide the Content-Length HTTP header."""
    code, status = "MissingContentLength", 411


class InvalidPart(S3Error):
    """One or more of the specified parts could not be found, or its entity tag did not match."""
    code, status = "InvalidPart", 400


class InvalidPartOrder(S3Error):
    """The list of parts was not in ascending order."""
    code, status = "InvalidPartOrder", 400


class MalformedXML(S3Error):
    """The XML you provided was not well-formed or did not validate against our published schema."""
    code, status = "MalformedXML", 400


class InvalidArgument(S3Error):
    """Invalid Argument."""
    code, status = "InvalidArgument", 400


class NotImplementedOp(S3Error):
    """A header or operation you provided implies functionality that is not implemented."""
    code, status = "NotImplemented", 501


class ServiceUnavailable(S3Error):
    """The subnet's gateway could not take the request: try again."""
    code, status = "ServiceUnavailable", 503


class InternalError(S3Error):
    """We encountered an internal error. Please try again."""
    code, status = "InternalError", 500
