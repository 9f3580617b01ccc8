"""Request and response bodies of the scoring API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_EVENTS_SCHEMA = 10_000  # hard ceiling; RECOPS_SERVE_MAX_EVENTS is usually lower
RECOMMENDATION_ID_PATTERN = r"^[0-9a-f]{32}\.[hc][0-9]{1,9}$"


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_encodable)]
EventType = Literal["view", "click", "add_to_cart", "purchase"]
FeedbackKind = Literal["impression", "click", "add_to_cart", "purchase"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendationContext(_Body):
    """What the shopper is doing right now (not stored)."""

    session_items: list[Text] = Field(default_factory=list, max_length=100, description="items viewed now")
    category: Text | None = Field(None, description="recommend only items of this category")
    exclude: list[Text] = Field(default_factory=list, max_length=500, description="never recommend these")


class RecommendationRequest(_Body):
    user_id: Text = Field(description="the shop's user id (pseudonymised at once, never stored)")
    k: int = Field(10, ge=1, le=100)
    context: RecommendationContext = Field(default_factory=RecommendationContext)


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    category: str
    brand: str
    price: float | None
    in_stock: bool
    explanation: str


class RecommendationResponse(BaseModel):
    recommendation_id: str = Field(description="quote it in POST /feedback")
    model_name: str
    model_version: int
    variant: Literal["champion", "challenger"]
    cold_start: bool = Field(description="true when the shopper had no usable history (trending items)")
    items: list[RecommendedItem]


class EventIn(_Body):
    user_id: Text
    item_id: Text
    event_type: EventType
    ts: AwareDatetime | None = Field(None, description="default: now")
    in_stock: bool | None = Field(None, description="the item's stock, when the event carries it")


class EventsRequest(_Body):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_SCHEMA)


class EventsResponse(BaseModel):
    accepted: int
    unknown_items: int = Field(description="events naming items the model does not know (ignored)")


class FeedbackIn(_Body):
    recommendation_id: Annotated[str, StringConstraints(pattern=RECOMMENDATION_ID_PATTERN)]
    user_id: Text
    item_id: Text
    kind: FeedbackKind
    ts: AwareDatetime | None = Field(None, description="default: now")


class FeedbackRequest(_Body):
    feedback: list[FeedbackIn] = Field(min_length=1, max_length=MAX_EVENTS_SCHEMA)


class FeedbackResponse(BaseModel):
    accepted: int
    dropped: int = Field(description="rows not queued because the writer is saturated")


class ForgetResponse(BaseModel):
    online_state_deleted: bool
    feedback_rows_deleted: int


class Health(BaseModel):
    status: str
    models: dict[str, int] = Field(default_factory=dict)
    checked_at: datetime | None = None
