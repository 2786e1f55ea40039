"""Typed recipes and mixtures, validated once at the edge (pydantic, extra="forbid").

A Recipe says which base model, which families, how to finetune, how to score and how long to
search. A Mixture holds only weights over family names, saved in the same YAML a person writes.
Inside the library only these objects travel, never raw dicts.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soupkit.errors import SoupkitError

# The shipped recipes and mixtures are package data (in a wheel too); the repository's top-level
# recipes/ and mixtures/ are links to these folders, where users look for them.
RECIPES_DIR = Path(str(importlib.resources.files("soupkit") / "recipes"))
MIXTURES_DIR = Path(str(importlib.resources.files("soupkit") / "mixtures"))
BUNDLED_BASE = "bundled:all-MiniLM-L6-v2"
# recipe sections that do not change what a search trial produces: a study resumes across changes to them
NOT_TRIAL_SECTIONS = frozenset({"search", "ingredients"})

# The names a recipe may use, defined here once. Each is the key of its implementation in a
# registry (tests/test_registries.py keeps them equal); the CLI lists choices from the registries.
# A family's task type: how it trains and is probed (its prompts: soupkit.prompts.PROMPT_NAMES).
TaskType = Literal["retrieval", "code", "classification", "clustering", "similarity", "paraphrase", "bitext"]
# An Optuna sampler (soupkit.search.samplers.SAMPLERS).
SamplerName = Literal["gp", "tpe", "random", "botorch"]
# An Optuna pruner (soupkit.search.samplers.PRUNERS): what may stop a trial at a milestone step.
PrunerName = Literal["none", "median", "successive-halving", "hyperband"]
# A quantised view of the probe embeddings (soupkit.probes.views.QUANTIZATIONS).
Quantization = Literal["int8", "binary"]
# Upper bounds of the numbers a recipe (or a command-line override) may set: far above any real
# use, low enough that a typo cannot ask for years of training or all of the machine's memory.
MAX_STEPS = 1_000_000
MAX_TRIALS = 100_000
MAX_BATCH = 4_096
MAX_SEQ_LENGTH = 32_768
MAX_PROBE = 100_000
MAX_SEED = 2**32 - 1
# A recipe's name names its study and its run folder (runs/<name>): a plain slug, never a path.
# (matched whole with fullmatch: `$` would also match before a trailing newline)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Objective weights are relative: bounded so that their normalised sum cannot overflow or vanish
MAX_OBJECTIVE_WEIGHT = 1e6


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Mixture(Strict):
    """Weights on the simplex over families; stored unnormalised as written, read normalised."""

    name: str | None = None
    weights: dict[str, float]

    @field_validator("weights")
    @classmethod
    def _valid_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if not weights:
            raise ValueError("a mixture needs at least one family weight")
        for family, w in weights.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of '{family}' must be a finite number >= 0, got {w}")
        if sum(weights.values()) <= 0:
            raise ValueError("weights are all zero")
        return weights

    def normalised(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {k: v / total for k, v in self.weights.items()}

    def to_yaml(self) -> str:
        body = {"name": self.name, "weights": {k: round(v, 6) for k, v in self.weights.items()}}
        return yaml.safe_dump({k: v for k, v in body.items() if v is not None}, sort_keys=False)


class LocalFamily(Strict):
    """A family from the user's own file (jsonl/csv/parquet) or a hub dataset id (online)."""

    name: str
    path: str | None = None
    hub: str | None = None
    split: str = "train"
    task: TaskType = "retrieval"

    @model_validator(mode="after")
    def _one_source(self) -> LocalFamily:
        if (self.path is None) == (self.hub is None):
            raise ValueError(f"family '{self.name}' needs exactly one of 'path' or 'hub'")
        return self


FamilyEntry = Union[str, LocalFamily]


class LossSpec(Strict):
    """The paper's objective; every part can be switched off."""

    scale: float = Field(20.0, gt=0, le=1000)
    hard_negatives: bool = True
    hard_negative_alpha: float = Field(5.0, ge=0, le=100)
    mask_duplicates: bool = True
    spread_out_weight: float = Field(0.0, ge=0, le=1000)
    matryoshka_dims: list[Annotated[int, Field(gt=0, le=MAX_SEQ_LENGTH)]] | None = None


def _train_setting(train: str) -> str:
    if train != "all" and not re.fullmatch(r"top:[1-9][0-9]{0,3}", train):
        raise ValueError(f"'{train}' is not 'all' or 'top:<k>' with k a layer count >= 1 (top:4)")
    return train


# `finetune.train`: `all`, or `top:<k>`
TrainSetting = Annotated[str, AfterValidator(_train_setting)]


def top_layers(train: str) -> int | None:
    """k of a `top:<k>` train setting; None for `all`."""
    return None if train == "all" else int(train.removeprefix("top:"))


class FinetuneSpec(Strict):
    steps: int = Field(30, gt=0, le=MAX_STEPS)
    batch_size: int = Field(32, ge=2, le=MAX_BATCH)
    learning_rate: float = Field(5e-5, gt=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, le=1)
    max_seq_length: int = Field(64, gt=0, le=MAX_SEQ_LENGTH)
    bf16: bool | None = None  # None: on where the device supports it (CUDA, or a CPU with bf16 units)
    # the token-embedding matrix is most of a small multilingual model (EmbeddingGemma: 201M of
    # 308M): frozen, it needs no gradient, no Adam state and no update
    freeze_token_embeddings: bool = False
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more time
    # AdamW's fused kernel: the same update in one pass over the parameters (several times faster
    # than the per-tensor loop on a CPU); off falls back to torch's default implementation
    fused_optimizer: bool = True
    # which layers train: `all`, or `top:<k>` (the last k transformer layers, the final norm,
    # pooling and Dense heads; the layers below and the embeddings are frozen and their output is
    # computed once per text and cached: soupkit.models.trunk)
    train: TrainSetting = "all"
    loss: LossSpec = LossSpec()

    @property
    def top_layers(self) -> int | None:
        """k of `train: top:<k>`; None when every layer trains."""
        return top_layers(self.train)


Distractors = Literal["random", "neighbours", "lexical"]


class ProbeSize(Strict):
    """One family's probe size, overriding the recipe-wide one (unset fields keep it)."""

    probe_size: int | None = Field(None, gt=0, le=MAX_PROBE)
    probe_corpus: int | None = Field(None, gt=0, le=10 * MAX_PROBE)
    distractors: Distractors | None = None


class ProbeSpec(Strict):
    """Probe sizes, and the embedding views also scored (`<probe>@<dim>`, `<probe>@int8|binary`).

    `sizes` sets a larger (or smaller) probe for named families: a held-out source with
    thousands of items deserves a probe big enough that a one-point change is not noise.
    """

    probe_size: int = Field(200, gt=0, le=MAX_PROBE)
    probe_corpus: int = Field(400, gt=0, le=10 * MAX_PROBE)
    sizes: dict[str, ProbeSize] = {}
    # what the probes of paraphrase, general-retrieval, code-search and medical-icd10-names compete
    # with (other families always take random documents): `neighbours` (whole Bible chapters,
    # stdlib modules, Debian name stems, ICD-10 categories) or `lexical` (each answer's TF-IDF
    # nearest documents); a strong model saturates them with `random` distractors
    distractors: Distractors = "random"
    max_seq_length: int = Field(128, gt=0, le=MAX_SEQ_LENGTH)
    batch_size: int = Field(64, gt=0, le=MAX_BATCH)
    max_train: int = Field(20_000, gt=0, le=10_000_000)
    dims: list[Annotated[int, Field(gt=0, le=MAX_SEQ_LENGTH)]] = []
    quantizations: list[Quantization] = []


class ObjectiveSpec(Strict):
    """Weighted mean of probe primary metrics. Probes missing from `weights` weigh 1.

    With `mode: pareto` the study maximises two objectives, the weighted mean over the `domain`
    probes and over all other probes (general), and keeps the Pareto front.
    """

    weights: dict[str, float] = {}
    mode: Literal["weighted", "pareto"] = "weighted"
    domain: list[str] = []

    @property
    def two_objectives(self) -> bool:
        """The one answer to "is this study two-objective?" (pareto: domain and general values)."""
        return self.mode == "pareto"

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        for probe, w in weights.items():
            if not math.isfinite(w) or w < 0 or w > MAX_OBJECTIVE_WEIGHT:
                raise ValueError(f"objective weight of '{probe}' must be between 0 and {MAX_OBJECTIVE_WEIGHT:g}, got {w}")
            if 0 < w < 1 / MAX_OBJECTIVE_WEIGHT:
                raise ValueError(f"objective weight of '{probe}' must be 0 or at least {1 / MAX_OBJECTIVE_WEIGHT:g}, "
                                 f"got {w}")
        return weights


class SearchSpec(Strict):
    budget: int = Field(40, gt=0, le=MAX_TRIALS)
    sampler: SamplerName = "gp"
    n_startup_trials: int = Field(10, ge=0, le=MAX_TRIALS)
    # disk budget: only the best K trial checkpoints are kept (and any a recorded soup uses)
    keep_checkpoints: int | None = Field(None, gt=0, le=MAX_TRIALS)
    # multi-fidelity: the finetune steps at which a trial scores its probes and reports the objective
    # (Recipe.milestone_steps derives them for a pruner when none are given), and the pruner that may
    # stop a trial there
    pruner: PrunerName = "none"
    milestones: list[Annotated[int, Field(ge=1, le=MAX_STEPS)]] = []
    # the share of each probe's items a milestone scores (the same items at every milestone and in
    # every trial): a cheaper, noisier score for the pruner; the final score uses every item
    milestone_fraction: float = Field(1.0, gt=0, le=1)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[int]) -> list[int]:
        if any(later <= earlier for earlier, later in itertools.pairwise(milestones)):
            raise ValueError("steps must be strictly increasing")
        return milestones


class IngredientSpec(Strict):
    """`soupkit ingredients`: K good and different mixtures of the study, each finetuned longer than
    a trial, to be souped. Fields left unset (batch size, learning rate, warm-up) keep `finetune`'s."""

    # the finetune fields carry FinetuneSpec's bounds, so a typo is refused before anything is made
    k: int = Field(4, ge=1, le=MAX_TRIALS)
    pool: int | None = Field(None, ge=1, le=MAX_TRIALS)  # the best N trials to choose from (default 2k)
    select: Literal["diverse", "top"] = "diverse"  # greedy max-min distance, or simply the best k
    steps: int = Field(480, gt=0, le=MAX_STEPS)
    batch_size: int | None = Field(None, ge=2, le=MAX_BATCH)
    learning_rate: float | None = Field(None, gt=0, le=1)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    train: TrainSetting | None = None

    def finetune_spec(self, finetune: FinetuneSpec) -> FinetuneSpec:
        """The trials' finetune settings with this section's longer budget laid over them."""
        update = {"steps": self.steps, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                  "warmup_ratio": self.warmup_ratio, "train": self.train}
        return FinetuneSpec.model_validate({**finetune.model_dump(), **{k: v for k, v in update.items() if v is not None}})


class Recipe(Strict):
    name: str
    base: str = BUNDLED_BASE
    seed: int = Field(0, ge=0, le=MAX_SEED)
    families: list[FamilyEntry]
    # scored as probes, never trained on: held-out sources that show whether a gain generalises
    probe_only: list[FamilyEntry] = []
    seed_mixture: Union[str, dict[str, float], None] = None
    finetune: FinetuneSpec = FinetuneSpec()
    # finetune settings that replace `finetune`'s when the base is this model (settings tuned on a
    # small model do not carry over to a big one): {base: {learning_rate: ..., loss: {...}}}
    finetune_by_base: dict[str, dict[str, Any]] = {}
    probes: ProbeSpec = ProbeSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    search: SearchSpec = SearchSpec()
    ingredients: IngredientSpec = IngredientSpec()

    @model_validator(mode="after")
    def _valid_finetune_by_base(self) -> Recipe:
        for base, changes in self.finetune_by_base.items():
            if not isinstance(changes.get("loss") or {}, dict):
                kind = type(changes["loss"]).__name__  # pydantic reports a ValueError as a validation error
                raise ValueError(f"finetune_by_base.{base}.loss: must be a mapping of loss settings, got {kind}")  # noqa: TRY004
            try:
                self._finetune_with(base)
            except ValidationError as exc:
                raise ValueError(one_line(exc, f"finetune_by_base.{base}", sep=".")) from None
        return self

    def _finetune_with(self, key: str) -> FinetuneSpec:
        changes = self.finetune_by_base[key]
        data = self.finetune.model_dump()
        loss = {**data.pop("loss"), **(changes.get("loss") or {})}
        return FinetuneSpec.model_validate({**data, **{k: v for k, v in changes.items() if k != "loss"}, "loss": loss})

    def for_base(self, same_model: Callable[[str, str], bool] = operator.eq) -> Recipe:
        """The recipe with the `finetune_by_base` entry of its base applied to `finetune`; the
        section is then empty. `same_model` says whether an entry names the base (callers pass
        soupkit.models.fetch.same_model: a short name, hub id or fetched folder of one model)."""
        if not self.finetune_by_base:
            return self
        key = next((k for k in self.finetune_by_base if same_model(k, self.base)), None)
        finetune = self._finetune_with(key) if key is not None else self.finetune
        return self.model_copy(update={"finetune": finetune, "finetune_by_base": {}})

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        problem = plain_name_problem(name)
        if problem:
            raise ValueError(f"{problem}; it names the study and its run folder runs/<name>")
        return name

    @field_validator("families")
    @classmethod
    def _unique_families(cls, families: list[FamilyEntry]) -> list[FamilyEntry]:
        if not families:
            raise ValueError("a recipe needs at least one family")
        return families

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        names = self.family_names() + self.probe_names_only()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"family '{dupes[0]}' is listed twice")
        if self.objective.two_objectives and not self.objective.domain:
            raise ValueError("objective.domain: a pareto objective needs the names of its domain probes")
        return self

    @model_validator(mode="after")
    def _valid_milestones(self) -> Recipe:
        search, steps = self.search, self.finetune.steps
        late = [m for m in search.milestones if m >= steps]
        if late:
            raise ValueError(f"search.milestones: step {late[0]} is not below finetune.steps ({steps}); a milestone "
                             "scores the probes during the finetune")
        if search.milestone_fraction < 1 and not self.milestone_steps():
            raise ValueError(f"search.milestone_fraction: {search.milestone_fraction} applies to milestones and the "
                             "recipe has none; give search.milestones or a pruner")
        if search.pruner == "none":
            return self
        if self.objective.two_objectives:
            raise ValueError(f"search.pruner: '{search.pruner}' needs objective.mode weighted; Optuna's pruners "
                             "compare trials on one objective, a pareto recipe has two")
        if not self.milestone_steps():
            raise ValueError(f"search.pruner: '{search.pruner}' has no step to stop a trial at: finetune.steps "
                             f"({steps}) leaves no milestone below it")
        return self

    def milestone_steps(self) -> list[int]:
        """The steps at which a trial scores its probes mid-finetune: `search.milestones`, or, for a
        pruner given none, a third and two thirds of the way (the only place they are derived)."""
        if self.search.milestones or self.search.pruner == "none":
            return list(self.search.milestones)
        steps = self.finetune.steps
        return sorted({m for m in (steps // 3, 2 * steps // 3) if m >= 1})

    def family_names(self) -> list[str]:
        """Families trained on (the mixture's coordinates)."""
        return [family_name(f) for f in self.families]

    def probe_names_only(self) -> list[str]:
        return [family_name(f) for f in self.probe_only]

    def probe_names(self) -> list[str]:
        """Every probe scored: the trained families' and the probe-only ones."""
        return self.family_names() + self.probe_names_only()


def plain_name_problem(name: str) -> str | None:
    """Why `name` cannot name a folder soupkit creates (a path, `..`, empty), or None."""
    if NAME_PATTERN.fullmatch(name):
        return None
    return (f"{name!r} is not a plain name: use letters, digits, '.', '_' and '-' (at most 100, starting with "
            "a letter or digit)")


def family_name(entry: FamilyEntry) -> str:
    return entry if isinstance(entry, str) else entry.name


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last
    silently, and a recipe ignores no key silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is written twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_text(text: str) -> object:
    """YAML as soupkit reads every file a user writes: safe, and no key written twice."""
    loader = _UniqueKeyLoader(text)  # what yaml.safe_load does, with the safe loader above
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path, what: str) -> object:
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a pipe, socket or device)"
        raise SoupkitError(f"{what} file {path} is {kind}; give a YAML file")
    if not path.is_file():
        raise SoupkitError(f"{what} file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SoupkitError(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the {what} as UTF-8") from None
    try:
        return read_yaml_text(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SoupkitError(f"{path}:{where}: malformed YAML: {problem}") from None


def validation_problem(exc: ValidationError) -> tuple[str, str, dict]:
    """The first useful error of a ValidationError: (dotted location, message, the raw error)."""
    errors = exc.errors()
    # in a union (family name or mapping) the "wrong type" branch is the least useful message
    useful = [e for e in errors if e["type"] not in {"string_type", "dict_type", "model_type"}]
    err = (useful or errors)[0]
    # union branches ("str", "dict[str,float]", ...) are pydantic's bookkeeping, not the user's keys
    branches = ("function-after", "str", "LocalFamily", "dict[", "list[")
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(branches))
    return loc, err["msg"].removeprefix("Value error, "), err


def one_line(exc: ValidationError, where: object, within: str | None = None, sep: str = ": ") -> str:
    """A ValidationError as one line: `<where>: <key>: <problem>` or `<where>: unknown key '<key>'`.
    `within`: a Mixture's `weights` are this recipe key; `sep` joins `where` and the key."""
    loc, msg, err = validation_problem(exc)
    if within:
        loc = within + loc.removeprefix("weights")
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{loc}'"
    return f"{where}{sep}{loc}: {msg}" if loc else f"{where}: {msg}"


def resolve_named(value: str, directory: Path, what: str) -> Path:
    """A path as given, or a bare name looked up as <directory>/<name>.yaml."""
    path = Path(value)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    candidate = directory / f"{value}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in directory.glob("*.yaml"))
    raise SoupkitError(f"unknown {what} '{value}'; known: {', '.join(known)} (or give a path to a .yaml file)")


def _load_yaml_model(path: str | Path, directory: Path, what: str, model: type[BaseModel], shape: str):
    """Resolve a name or path, read YAML safely, validate into `model`; one clear line on error."""
    path = resolve_named(str(path), directory, what)
    data = _read_yaml(path, what)
    if not isinstance(data, dict):
        raise SoupkitError(f"{path}: a {what} must be {shape}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SoupkitError(one_line(exc, path)) from None


def load_recipe(path: str | Path) -> Recipe:
    return _load_yaml_model(path, RECIPES_DIR, "recipe", Recipe, "a YAML mapping")


def load_mixture(path: str | Path) -> Mixture:
    return _load_yaml_model(path, MIXTURES_DIR, "mixture", Mixture, "a YAML mapping with a 'weights' key")


def seed_mixture_of(recipe: Recipe, recipe_path: Path | None = None) -> Mixture | None:
    """The recipe's hand-made seed mixture: a name in mixtures/, a path, or inline weights."""
    if recipe.seed_mixture is None:
        return None
    if isinstance(recipe.seed_mixture, dict):
        where = recipe_path or Path(recipe.name)
        try:
            return Mixture(name=f"{recipe.name}-seed", weights=recipe.seed_mixture)
        except ValidationError as exc:
            raise SoupkitError(one_line(exc, where, within="seed_mixture")) from None
    return load_mixture(recipe.seed_mixture)


def with_overrides(recipe: Recipe, overrides: dict[str, tuple[str, Any]]) -> Recipe:
    """The recipe with command-line overrides, checked by the same model (and bounds) as the file.

    `overrides` maps a dotted field ("finetune.steps") to (option name, value); None values are
    left out. A value out of range is one line naming the option, e.g.
    "--steps: Input should be less than or equal to 1000000, got 99999999999999999999".
    """
    data = recipe.model_dump(mode="json")
    given = {field: item for field, item in overrides.items() if item[1] is not None}
    for field, (_, value) in given.items():
        *parents, key = field.split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        loc, msg, err = validation_problem(exc)
        if not loc:  # a rule across fields: its message names them and their values; name the option too
            named = sorted((msg.find(field), option) for field, (option, _) in given.items() if field in msg)
            raise SoupkitError(f"{named[0][1]}: {msg}" if named else msg) from None
        # the option of the field, or of the list the field is an item of (--milestones 0,8)
        field = next((f for f in given if loc == f or loc.startswith(f + ".")), None)
        option, value = given[field] if field else (loc, err.get("input"))
        raise SoupkitError(f"{option}: {msg}, got {value}") from None
