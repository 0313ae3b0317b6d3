"""What every kind of spec says about its Modal apps: ``AppSpec``, the base of a service
(``Spec``) and a gateway (``GatewaySpec``), and the parts only it holds (image, usage, deploy,
verify, policy, the Hugging Face token)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from ..tokens import shown
from .fields import (
    ENVIRONMENT_NAME,
    HF_TOKEN_KEY,
    ONLY_PATTERN_KEYS,
    PYTHON_VERSION,
    Duration,
    EnvVarName,
    ImageReference,
    ImageText,
    LabelKey,
    MountPath,
    ObjectName,
    OneLine,
    TagText,
    shown_duration,
)
from .images import DEFAULT_BASE_IMAGE
from .reserved import reserved_env
from .runtime import Placement
from .scaling import Scaling
from .strict import AlsoAccepts, SharedFields, StrictModel

SPEC_VERSION = 1


HF_CACHE = "/root/.cache/huggingface"
VLLM_CACHE = "/root/.cache/vllm"


class Image(StrictModel):
    """The container image: a registry base, Python, vLLM and any extra packages."""

    base: ImageReference = Field(
        DEFAULT_BASE_IMAGE,
        description="Registry image: [registry[:port]/]name[:tag][@digest]. The default "
        "carries the CUDA 13.0 toolkit the pinned engines' torch is built for.",
    )
    python: str = Field(
        "3.12", pattern=PYTHON_VERSION.pattern, description='Python version, e.g. "3.12".'
    )
    packages: list[Annotated[ImageText, Field(min_length=1)]] = Field(
        default_factory=list, description="Extra pip requirements."
    )
    env: dict[EnvVarName, ImageText] = Field(
        default_factory=dict,
        description="Extra environment variables (never secret values).",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )


class Usage(StrictModel):
    """Expected traffic, for cost estimates in plan and explain only: nothing is deployed."""

    active_hours_per_day: float = Field(
        ge=0,
        le=24,
        description="Hours a day one container of each pool is busy (--active-hours-per-day "
        "overrides it).",
    )


class Deploy(StrictModel):
    """How ``apply`` deploys the app (not part of what is deployed: changing it changes
    nothing on Modal by itself)."""

    strategy: Literal["rolling", "recreate"] = Field(
        "rolling",
        description="rolling: new containers take traffic while old ones drain (Modal's "
        "default). recreate: the running containers are stopped as the new version is "
        "published, a short outage; the way out when the app sits at max_containers. "
        "apply --strategy overrides it for one run.",
    )


VERIFY_MAX_TIMEOUT = 3600  # the longest apply waits for a new version's first answer


class VerifyRequest(StrictModel):
    """What verification sends: one request of the kind the app serves (``modaliac test``'s)."""

    prompt: OneLine | None = Field(
        None, description="Text to send instead of the built-in one (modaliac test's)."
    )


class Verify(StrictModel):
    """Health-gated apply: after a deploy, one real request must be answered, else apply rolls
    the app back (not part of what is deployed)."""

    enabled: bool = Field(
        False,
        description="Verify every deploy of this app (apply --verify / --no-verify overrides).",
    )
    timeout: Duration = Field(
        600,
        description='How long the new version may take to answer, cold start included, e.g. "10m".',
    )
    request: VerifyRequest = Field(
        default_factory=VerifyRequest, description="The request verification sends."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_in_range(cls, value: int) -> int:
        if not 1 <= value <= VERIFY_MAX_TIMEOUT:
            raise ValueError(
                f"verification waits from 1s to {VERIFY_MAX_TIMEOUT // 3600}h, got "
                f"{shown_duration(value)}"
            )
        return value


VERIFY_HELP = (
    "Health-gated apply: true, or enabled, timeout and request. After a deploy one real "
    "request must be answered, else apply rolls the app back."
)


def verify_switch(value: Any) -> Any:
    """``verify: true`` / ``false``: on or off with the defaults."""
    if isinstance(value, bool):
        return {"enabled": value}
    if isinstance(value, str | int | float):
        raise ValueError(
            "expected true, false or a mapping (enabled, timeout, request), got "
            + shown(str(value))
        )
    return value


class Policy(StrictModel):
    """Policy checks (docs/policies.md): which rules this spec silences, and why."""

    suppress: dict[str, str] = Field(
        default_factory=dict,
        description="Rule id -> the reason it does not apply here (required, shown in review).",
        json_schema_extra={"propertyNames": {"pattern": r"^MDL[0-9]{3}$"}},
    )


HF_TOKEN_SECRET_HELP = (
    f"Modal secret holding the Hugging Face token as {HF_TOKEN_KEY} (gated or private "
    "models); attached to the model containers, and a secret without that key fails the "
    "deploy. Not also under secrets."
)


def hf_secret_problems(
    hf_token_secret: str | None, secrets: list[str], api_key_secret: str | None, api_key_at: str
) -> list[tuple[tuple[str, ...], str]]:
    """The Hugging Face token's secret is attached once, and never to the public endpoint."""
    if hf_token_secret is None:
        return []
    if hf_token_secret in secrets:
        return [
            (
                ("hf_token_secret",),
                f"{shown(hf_token_secret)} is also under secrets; hf_token_secret attaches it "
                "already, so remove it from secrets",
            )
        ]
    if hf_token_secret == api_key_secret:
        return [
            (
                ("hf_token_secret",),
                f"{shown(hf_token_secret)} is also {api_key_at}, which the public endpoint "
                "reads; keep the Hugging Face token in a secret of its own",
            )
        ]
    return []


class AppSpec(SharedFields):
    """The keys a service and a gateway share, declared once; each kind places them among its
    own keys (``key_order``) and names its public endpoint's API key (``_api_key``)."""

    version: Literal[1] = Field(1, description="Spec language version; 1.")
    environment: str | None = Field(
        None, pattern=ENVIRONMENT_NAME.pattern, description="Modal environment."
    )
    labels: dict[LabelKey, TagText] = Field(
        default_factory=dict,
        description="Become Modal app tags.",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )
    placement: Placement = Field(
        default_factory=Placement, description="Region, cloud and routing region."
    )
    volumes: dict[MountPath, ObjectName] = Field(
        default_factory=lambda: {HF_CACHE: "huggingface-cache", VLLM_CACHE: "vllm-cache"},
        description="Mount path -> Modal volume name.",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )
    secrets: list[ObjectName] = Field(
        default_factory=list, description="Modal secret NAMES (values stay in Modal)."
    )
    hf_token_secret: ObjectName | None = Field(None, description=HF_TOKEN_SECRET_HELP)
    scaling: Scaling = Field(
        default_factory=Scaling, description="Autoscaling and time limits, per GPU pool."
    )
    image: Image = Field(
        default_factory=Image, description="The container image: base, Python, packages, env."
    )
    usage: Usage | None = Field(
        None, exclude=True, description="Expected traffic, for cost estimates only."
    )
    deploy: Deploy = Field(
        default_factory=Deploy, exclude=True, description="How a deploy replaces containers."
    )
    verify: Annotated[Verify, BeforeValidator(verify_switch), AlsoAccepts({"type": "boolean"})] = (
        Field(default_factory=Verify, exclude=True, description=VERIFY_HELP)
    )
    policy: Policy = Field(
        default_factory=Policy, exclude=True, description="Policy rules suppressed, with why."
    )

    def _api_key(self) -> tuple[str, str] | None:
        """The secret holding the public endpoint's API key and the key inside it, if any."""
        raise NotImplementedError

    def referenced_secrets(self) -> list[str]:
        """Every secret the apps attach: the spec's, the Hugging Face token's and the public
        endpoint's API key."""
        key = self._api_key()
        return [*self.secrets, *self._token_secret(), *([key[0]] if key else [])]

    def secret_keys(self) -> dict[str, str]:
        """The key each secret must hold, where modaliac knows it: the Hugging Face token's
        and the API key's."""
        keys = {name: HF_TOKEN_KEY for name in self._token_secret()}
        key = self._api_key()
        if key is not None:
            keys[key[0]] = key[1]
        return keys

    def _token_secret(self) -> list[str]:
        return [] if self.hf_token_secret is None else [self.hf_token_secret]

    def _secret_problems(
        self, at: tuple[str, ...], holder: str
    ) -> list[tuple[tuple[str, ...], str]]:
        """The Hugging Face token's secret and the API key's are each attached once, and only
        where they belong: the API key to the public endpoint (at ``at``, the ``holder``)."""
        key = self._api_key()
        api_key_secret = key[0] if key else None
        found = hf_secret_problems(
            self.hf_token_secret, self.secrets, api_key_secret, ".".join((*at, "api_key_secret"))
        )
        if api_key_secret is not None and api_key_secret in self.secrets:
            found.append(
                (
                    (*at, "api_key_secret"),
                    f"{shown(api_key_secret)} is also under secrets; the API key secret is "
                    f"attached to the {holder} only, so remove it from secrets",
                )
            )
        if key is not None:
            found += api_key_env_problems((*at, "api_key_env"), key[1], self.image.env)
        return found


def api_key_env_problems(
    at: tuple[str, ...], name: str, image_env: dict[str, str]
) -> list[tuple[tuple[str, ...], str]]:
    """``api_key_env`` (at ``at``) names a variable of its own: not one the container's
    software reads, and not one ``image.env`` sets (the image would pin the key)."""
    if reserved_env(name):
        return [
            (
                at,
                f"{shown(name)} is read by the container's own software (the shell, Python, "
                "Hugging Face, Modal, vLLM or CUDA); name a variable of its own, e.g. API_KEY",
            )
        ]
    if name in image_env:
        return [
            (
                ("image", "env", name),
                f"sets {shown(name)}, the api_key_env at {'.'.join(at)}: the image would pin "
                "the API key; remove it from image.env",
            )
        ]
    return []
