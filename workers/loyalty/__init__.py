"""The Loyalty.lt Shop API: a typed client, its request/answer models and its error hierarchy."""

from workers.loyalty.client import LoyaltyClient, parse_retry_after
from workers.loyalty.errors import (
    AlreadyDone,
    AuthenticationError,
    LoyaltyError,
    NotFoundError,
    NotSent,
    PermanentError,
    RateLimited,
    RetryableError,
    ValidationError,
)
from workers.loyalty.models import (
    AwardPointsRequest,
    Balance,
    BalanceQuery,
    CardBalance,
    CardPointsResult,
    CartItem,
    CreateTransactionRequest,
    CreateTransactionResult,
    CredentialsInfo,
    DeductBody,
    DeductPointsRequest,
    DeductPointsResult,
    RedeemPointsRequest,
    Transaction,
    TransactionFilters,
    TransactionPage,
    TransactionType,
)

__all__ = [
    "AlreadyDone", "AuthenticationError", "AwardPointsRequest", "Balance", "BalanceQuery", "CardBalance",
    "CardPointsResult", "CartItem", "CreateTransactionRequest", "CreateTransactionResult", "CredentialsInfo",
    "DeductBody", "DeductPointsRequest",
    "DeductPointsResult", "LoyaltyClient", "LoyaltyError", "NotFoundError", "NotSent", "PermanentError", "RateLimited",
    "RedeemPointsRequest", "RetryableError", "Transaction", "TransactionFilters", "TransactionPage",
    "TransactionType", "ValidationError", "parse_retry_after",
]
