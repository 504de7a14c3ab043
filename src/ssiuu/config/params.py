"""The typed schema of ``params.yaml``, and its loading and validation.

Every stage reads its knobs through :func:`load_params`, so a typo, a missing key or a
value out of range fails before any data or model is touched, with a message that names
the file and the dotted field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ssiuu.config.catalog import METHODS
from ssiuu.config.errors import ParamsError
from ssiuu.config.knobs import (
    DPOParams,
    GAParams,
    GDParams,
    NPOParams,
    RMUParams,
    SsiuuExactParams,
    SsiuuGAParams,
    SsiuuNPOParams,
    SsiuuParams,
)

SPLITS = ("forget", "retain", "utility", "general", "benign")
HOLDOUT = "holdout"  # facts about people no model trains on: membership inference's non-members
STOP_SLICE = "stop"  # more never-seen people: the unlearning stop's reference, never evaluated
ATTRIBUTES = ("birth_city", "birth_year", "employer", "occupation", "blood_type", "phone")



def _no_repeats(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat")
    return values


T = TypeVar("T")
NoRepeats = Annotated[T, AfterValidator(_no_repeats)]
LearningRates = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorParams(_Strict):
    """Knobs of the embedded default data set (fictitious people and their facts).

    ``structure``: ``independent`` draws every attribute of every person on its own;
    ``grouped`` puts each person in one of ``n_groups`` hidden groups (a family business)
    whose home town, employer and occupation every member shares, whose decade holds
    every member's birth year and whose area code starts every member's phone number: a
    person's facts depend on each other through the group.
    """

    seed: int = 0
    n_people: int = Field(50, ge=4, le=1000)
    n_holdout_people: int = Field(10, ge=0, le=1000)  # never trained on: membership inference
    n_stop_people: int = Field(10, ge=0, le=1000)  # never trained on: the stop's reference
    attributes: list[Literal[ATTRIBUTES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["birth_city", "birth_year", "employer", "occupation"],
        min_length=1,
    )
    structure: Literal["independent", "grouped"] = "independent"
    n_groups: int = Field(6, ge=3, le=40)
    n_countries: int = Field(20, ge=3, le=60)
    n_arithmetic: int = Field(20, ge=0, le=81)
    n_general: int = Field(40, ge=2, le=100)  # trained, never evaluated: utility's neighbours
    n_benign: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _general_fits_beside_utility(self) -> GeneratorParams:
        if self.n_countries + (self.n_general + 1) // 2 > 60:
            raise ValueError("n_countries + half of n_general (capitals) must be at most 60, "
                             "the fictitious countries there are")
        if self.n_arithmetic + self.n_general // 2 > 81:
            raise ValueError("n_arithmetic + half of n_general (sums) must be at most 81, the "
                             "sums of two digits 1-9 there are")
        return self


class FieldMap(_Strict):
    """Names of the columns of a user data set that hold each of our fields."""

    question: str = "question"
    answer: str = "answer"
    subject: str = "subject"
    id: str | None = "id"
    attribute: str | None = "attribute"
    distractors: str | None = "distractors"


class JsonlSource(_Strict):
    """User facts as local JSONL files, optionally with utility / benign sets.

    Either ``facts`` (split into forget / retain by the deletion requests) or an explicit
    ``forget`` and ``retain`` pair (e.g. a benchmark's own splits).
    """

    facts: str | None = None
    forget: str | None = None
    retain: str | None = None
    utility: str | None = None
    benign: str | None = None
    holdout: str | None = None  # facts about people no model trains on (membership inference)
    general: str | None = None  # general facts trained on, never evaluated (default: generated)
    stop: str | None = None  # more such people, with distractors: the unlearning stop's reference
    fields: FieldMap = FieldMap()

    @model_validator(mode="after")
    def _one_mode(self) -> JsonlSource:
        explicit = (self.forget is not None, self.retain is not None)
        if self.facts is None and explicit != (True, True):
            raise ValueError("give either 'facts', or both 'forget' and 'retain'")
        if self.facts is not None and any(explicit):
            raise ValueError("give either 'facts' or 'forget' + 'retain', not both")
        return self


class HFSource(_Strict):
    """User facts as a Hugging Face dataset (local path or hub name, cached offline)."""

    name: str
    config: str | None = None
    split: str = "train"
    fields: FieldMap = FieldMap()


class DataParams(_Strict):
    """Where the facts come from and how the splits are made."""

    source: Literal["generated", "jsonl", "hf"] = "generated"
    requests_dir: str = "data/requests"
    seed: int = 0
    generator: GeneratorParams = GeneratorParams()
    jsonl: JsonlSource | None = None
    hf: HFSource | None = None

    @model_validator(mode="after")
    def _source_has_its_section(self) -> DataParams:
        if self.source == "jsonl" and self.jsonl is None:
            raise ValueError("source is 'jsonl' but the section data.jsonl is missing")
        if self.source == "hf" and self.hf is None:
            raise ValueError("source is 'hf' but the section data.hf is missing")
        return self


class ScratchModelParams(_Strict):
    """Architecture of the small Llama built from scratch (``model.name: scratch``).

    ``vocab_size``: the most tokens of its subword tokenizer (trained on the non-forget
    text; every character of the corpus is kept even beyond it).
    """

    vocab_size: int = Field(400, ge=16)
    hidden_size: int = Field(128, ge=8)
    intermediate_size: int = Field(512, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class ModelParams(_Strict):
    """Which causal LM: ``scratch`` or any Hugging Face id / local folder."""

    name: str = Field("scratch", min_length=1)
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = Field(48, ge=8)
    scratch: ScratchModelParams = ScratchModelParams()


class TrainParams(_Strict):
    """One training run of the shared loop."""

    steps: int = Field(ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    log_every: int = Field(10, ge=1)


class ModelTrainingParams(_Strict):
    """The recipe of a trained model (``base`` or ``oracle``), run once per seed."""

    splits: list[Literal[SPLITS]] = Field(min_length=1)  # type: ignore[valid-type]
    train: TrainParams


class EvaluateParams(_Strict):
    """Scoring of a model on the forget, retain and utility sets, and membership inference
    on forget against holdout (where the data has a holdout split)."""

    batch_size: int = Field(64, ge=1)
    splits: list[Literal["forget", "retain", "utility"]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["forget", "retain", "utility"], min_length=1
    )
    mia_k: float = Field(0.4, gt=0, le=1)  # Min-K% / Min-K%++: the fraction of lowest tokens


class LossesParams(_Strict):
    """Per-method loss knobs; DVC tracks each method's entry for its own stage only.

    One field per method of :data:`ssiuu.config.catalog.CATALOG`, typed by its ``knobs``.
    """

    ga: GAParams = GAParams()
    gd: GDParams = GDParams()
    npo: NPOParams = NPOParams()
    dpo: DPOParams = DPOParams()
    rmu: RMUParams = RMUParams()
    ssiuu: SsiuuParams = SsiuuParams()
    ssiuu_exact: SsiuuExactParams = SsiuuExactParams()
    ssiuu_ga: SsiuuGAParams = SsiuuGAParams()
    ssiuu_npo: SsiuuNPOParams = SsiuuNPOParams()


class LoraParams(_Strict):
    """LoRA adapters (``peft``): the model's own weights stay frozen and only the adapters
    train, for unlearning a large model in little memory, or for an attack as an attacker
    with little memory would run it."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] = (
        "all-linear")


class AdvantageParams(_Strict):
    """The answer-advantage forget term (:mod:`ssiuu.unlearning.methods.advantage`): ``beta`` its
    weight, ``alternatives`` how many other answers of the same attribute each forget fact
    is weighed against."""

    beta: float = Field(gt=0)
    alternatives: int = Field(4, ge=1, le=32)


class UnlearnTrainParams(_Strict):
    """The optimisation shared by every method (kept equal so methods compare fairly).

    ``lrs``: the learning-rate ladder of the stop (:class:`StopParams`: from the highest
    down under the reference rule, from the lowest up under the paper's). ``lora``
    null unlearns every weight; otherwise only LoRA adapters train (the model is saved as
    its adapter, and read back merged into its base). ``retain_splits``: what a method's
    retain term trains on: the retained people's facts and, with ``general``, general
    facts the base learnt beside the evaluated utility set and disjoint from it (never the
    utility set itself, which would then measure nothing). ``retain_term``: ``nll`` (the
    retain answers' NLL, the paper's GD) or ``kl`` (the KL from the starting model's
    next-token distribution over the whole retain text; it keeps a frozen copy of the
    model, twice the weights in memory), for every method with such a term.
    ``forget_floor: stop_slice`` (our extension; methods whose forget term is gradient
    ascent): a forget fact stops being pushed once its answer log-prob (mean per token) is
    at or below the stop slice's mean under the starting model, the never-seen level;
    ``null`` pushes every fact at every step (the paper's GA). ``forget_token_floor: k``
    (with it, a fraction in (0, 1]): each answer token, too, stops being pushed once its
    log-prob is at or below the stop slice's mean Min-K% statistic under the starting
    model (per never-seen fact, the mean of its ``k`` fraction of least likely answer
    tokens; Min-K% membership inference's statistic, so best ``evaluate.mia_k``).
    ``forget_advantage`` (our extension, gradient-ascent forget terms; null: none): adds
    the answer-advantage term (:class:`AdvantageParams`), which lowers the answer's share
    against other answers of its attribute, down to an even share, not past it.
    """

    lrs: LearningRates
    max_steps: int = Field(ge=1)
    retain_splits: NoRepeats[list[Literal["retain", "general"]]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["retain"], min_length=1)
    retain_term: Literal["nll", "kl"] = "nll"
    forget_floor: Literal["stop_slice"] | None = None
    forget_token_floor: float | None = Field(None, gt=0, le=1)
    forget_advantage: AdvantageParams | None = None
    forget_batch_size: int = Field(64, ge=1)
    retain_batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    lora: LoraParams | None = None


Threshold = Literal["chance", "oracle"] | float


class StopParams(_Strict):
    """When unlearning stops (:mod:`ssiuu.unlearning.stop`).

    ``rule: reference`` (the default): at the first check where the forget facts cannot be
    told from the stop slice's never-seen facts, on answer log-prob and multiple-choice
    probability share alike (Welch's ``|t| <= z`` for both); the learning rates of
    ``unlearn.train.lrs`` are tried from the highest down, a lower one only when a step
    jumped over the band; the kept model is the first check inside the band, else the
    closest check of every rate tried. A run ends once no score is above the band any
    more, or ``patience`` checks after some score went past it without coming closer.
    ``centre_checks``: after the first check inside the band, up to this many more checks
    may find a more central one (a smaller largest ``|t|``), which is kept instead; the
    run ends once that many checks in a row found none, or a score went below the band. 0 keeps
    the first check inside (a run that enters from above then always stops near ``+z``,
    the still-known edge). ``min_k`` (a fraction ``k``): a third score in the band, each
    fact's Min-K% statistic (the mean of its ``k`` least likely answer-token log-probs:
    what Min-K% membership inference reads, so best ``evaluate.mia_k``).

    ``rule: threshold`` (the paper's, one-sided): once every forget score in
    ``thresholds`` is at or below its threshold: ``chance`` (1/3, for ``mcq`` only),
    ``oracle`` (the oracle's score on the same metric, read from metrics/oracle.json) or a
    number; rates tried from the lowest up, the first that gets there kept.

    Checked every ``eval_every`` steps. Retain exact match, which the stop does not read,
    is scored every ``retain_every`` checks and at the last step (the curves' retain line).
    """

    rule: Literal["reference", "threshold"] = "reference"
    z: float = Field(2.0, gt=0)
    patience: int = Field(10, ge=1)
    centre_checks: int = Field(0, ge=0)
    min_k: float | None = Field(None, gt=0, le=1)
    thresholds: dict[Literal["acc", "mcq"], Threshold] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"mcq": "chance"}, min_length=1)
    eval_every: int = Field(1, ge=1)
    retain_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _chance_is_for_mcq(self) -> StopParams:
        if self.thresholds.get("acc") == "chance":
            raise ValueError("threshold 'chance' is defined for metric 'mcq' only")
        return self


class UnlearnParams(_Strict):
    """Which methods run, and how (``stages/unlearn.py``)."""

    methods: NoRepeats[list[Literal[METHODS]]] = Field(  # type: ignore[valid-type]
        min_length=1)
    train: UnlearnTrainParams
    stop: StopParams = StopParams()
    losses: LossesParams = LossesParams()


ATTACK_NAME = r"^(benign|harmful_[1-9][0-9]?)$"


class RelearnTrainParams(_Strict):
    """The attack's fine-tuning: the same for every model and every attack.

    Each learning rate of ``lrs`` is one attack strength; every model is attacked at each
    and scored every ``eval_every`` steps (and at step 0 and the last). ``lora`` null is a
    full fine-tune; otherwise LoRA adapters with those settings.
    """

    lrs: NoRepeats[LearningRates]
    steps: int = Field(ge=1)
    batch_size: int = Field(16, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(5, ge=1)
    lora: LoraParams | None = None

    @model_validator(mode="after")
    def _distinct_curve_names(self) -> RelearnTrainParams:
        names = [f"{lr:g}" for lr in self.lrs]
        if len(set(names)) != len(names):
            raise ValueError(f"lrs {names} must differ within 6 significant digits: each "
                             "names its curve file")
        return self


class RelearnParams(_Strict):
    """Relearning attacks on every unlearned model, the base and the oracle (``relearn``).

    An attack is ``benign`` (fine-tune on the benign instruction set) or ``harmful_<P>``
    (fine-tune on P% of the forget facts, judged on the rest). Only the attack steps at
    which the oracle's retain accuracy stays at or above ``min_oracle_retain`` count.
    """

    attacks: NoRepeats[list[Annotated[str, StringConstraints(pattern=ATTACK_NAME)]]] = Field(
        min_length=1)
    train: RelearnTrainParams
    min_oracle_retain: float = Field(0.9, ge=0, le=1)


class AttributionParams(_Strict):
    """Neuron attribution on the forget set (``stages/attribute.py``, ``stages/diagnose.py``)."""

    batch_size: int = Field(32, ge=1)
    top_m: int = Field(100, ge=1)


class GateParams(_Strict):
    """The release gate (``registry.gate``): what a version must show to be released.

    ``score``: the held-out forget score compared with the oracle's after every attack;
    ``max_oracle_gap``: how far above the oracle's it may come back, in every seed and
    attack (the method's worst case); ``max_retain_drop`` / ``max_utility_drop``: how far
    below the base's the version's own retain / utility accuracy after unlearning may fall;
    ``require_stop``: the method reached its unlearning stop in every seed;
    ``max_privleak``: how far from 0 the method's privleak (membership inference with
    ``privacy_attack``, against the oracle) may lie in every seed (``None``: no privacy
    condition; with one, data without a holdout split fails it, as unmeasured).
    ``gap_z``: for an accuracy score (``acc``, ``mcq``), the oracle gap fails only when its
    lower confidence bound over the held-out facts, ``gap - gap_z * SE`` (SE of a
    difference of two proportions over as many facts), lies above ``max_oracle_gap``
    (1.645: one-sided 95 %); 0 decides on the point estimate. On 28 held-out facts the SE
    is about 0.12, so a single seed's +0.07 is noise, not knowledge come back.
    ``privleak_z``: the privacy condition fails only when privleak lies beyond
    ``±max_privleak`` by more than ``privleak_z`` standard errors (the two AUCs' Hanley–McNeil
    errors over the members and non-members scored, combined as independent); 0 decides
    on the point estimate. On 40 + 40 facts one AUC's SE is about 0.065, so a privleak of
    −0.38 against an oracle AUC of 0.65 lies within noise of −0.25.
    """

    score: Literal["acc", "mcq", "logprob"] = "mcq"
    max_oracle_gap: float = Field(0.05, ge=0)
    gap_z: float = Field(1.645, ge=0)
    max_retain_drop: float = Field(0.05, ge=0, le=1)
    max_utility_drop: float = Field(0.05, ge=0, le=1)
    require_stop: bool = True
    max_privleak: float | None = Field(None, gt=0)
    privleak_z: float = Field(1.645, ge=0)
    privacy_attack: Literal["loss", "zlib", "min_k", "min_k_plus_plus"] = "min_k"


class RegistryParams(_Strict):
    """The MLflow Model Registry record (``stages/register.py``).

    ``model_name``: the registered model, one per model source and deletion request set
    (``null``: ``ssiuu-<model>-<request ids>``, so each new request set gets its own, and
    a release for one set never answers another); ``log_weights``: log each version's
    weights through MLflow's transformers flavour (``false``: the version points at its
    DVC-tracked folder and records its hashes, for models too large to copy).
    """

    model_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")] \
        | None = None
    log_weights: bool = True
    gate: GateParams = GateParams()


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as "
                         "'Europe/Berlin' or 'UTC')") from None
    return name


class FlowsParams(_Strict):
    """The Prefect flows (``flows/``); no DVC stage reads them.

    ``retries``: how often a stage killed by a signal is rerun (a failure with an exit
    code, e.g. a bad param, never is); ``inbox``: where deletion requests are dropped;
    ``status_dir``: one status file per request; ``timezone``: the zone of the nightly
    schedule in ``prefect.yaml``.
    """

    retries: int = Field(2, ge=0)
    retry_delay_seconds: float = Field(5.0, ge=0)
    inbox: str = "data/inbox"
    status_dir: str = "data/request_status"
    timezone: Annotated[str, AfterValidator(_known_timezone)] = "UTC"


class TuningParams(_Strict):
    """How ``flows/tune.py`` chooses a regularised method's λ (docs/method.md); no DVC stage
    reads it.

    ``seeds``: the tuning seeds, which must not be among ``seeds`` (the report's: it never
    selects anything); ``lams``: the grid, per gradient mode of ``modes``;
    ``retain_tolerance``: how far below its base method's retain accuracy after unlearning
    an admissible point may lie.
    """

    seeds: NoRepeats[list[Annotated[int, Field(ge=0)]]] = Field(
        default_factory=lambda: [100, 101], min_length=1)
    lams: NoRepeats[list[Annotated[float, Field(gt=0)]]] = Field(
        default_factory=lambda: [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1, 1.0], min_length=1)
    modes: NoRepeats[list[Literal["first_order", "exact"]]] = Field(
        default_factory=lambda: ["first_order", "exact"], min_length=1)
    retain_tolerance: float = Field(0.02, ge=0)


class RuntimeParams(_Strict):
    """Execution settings that DVC does not track. The thread count changes results only
    by float rounding (torch splits its reductions across threads); gradient checkpointing
    (training recomputes each block's activations in the backward pass) saves memory and
    changes nothing."""

    num_threads: int = Field(2, ge=1)
    gradient_checkpointing: bool = False


class Params(_Strict):
    """The whole of ``params.yaml``.

    ``seeds``: every stochastic stage (base and oracle training, unlearning, attacks) runs
    once per seed; seed s of a stage builds on seed s of the one before it.
    """

    seeds: NoRepeats[list[Annotated[int, Field(ge=0)]]] = Field(
        default_factory=lambda: [0], min_length=1)
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    base: ModelTrainingParams
    oracle: ModelTrainingParams
    evaluate: EvaluateParams = EvaluateParams()
    unlearn: UnlearnParams
    attribution: AttributionParams = AttributionParams()
    relearn: RelearnParams
    registry: RegistryParams = RegistryParams()
    flows: FlowsParams = FlowsParams()
    tuning: TuningParams = TuningParams()
    runtime: RuntimeParams = RuntimeParams()

    @model_validator(mode="after")
    def _oracle_never_sees_forget(self) -> Params:
        if "forget" in self.oracle.splits:
            raise ValueError("oracle.splits must not contain 'forget': the oracle never sees it")
        return self

    @model_validator(mode="after")
    def _rmu_blocks_exist(self) -> Params:
        if "rmu" not in self.unlearn.methods or self.model.name != "scratch":
            return self
        rmu, blocks = self.unlearn.losses.rmu, self.model.scratch.num_hidden_layers
        wrong = [index for index in [rmu.layer, *(rmu.trained_layers or [])] if index >= blocks]
        if wrong:
            raise ValueError(f"unlearn.losses.rmu: block {wrong[0]} does not exist: the scratch "
                             f"model has {blocks} (model.scratch.num_hidden_layers), "
                             f"0 to {blocks - 1}")
        return self


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown parameter"
    elif "input" in error and not isinstance(error["input"], dict | list):
        message = f"{message} (got {error['input']!r})"
    return f"{field}: {message}"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming ``source`` and each field."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err)}" for err in exc.errors()]
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; raise :class:`ParamsError` naming the file if it is not one."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate ``params.yaml``."""
    return parse_params(read_yaml(path), source=str(path))
