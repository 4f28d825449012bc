"""Loss patterns of neural networks: multi-point optimisation (MPO) of a 2-D plane in weight space.

Skorokhodov & Burtsev, *Loss Patterns of Neural Networks* (papers/loss_patterns_mpo.txt; FIGURES.md §4).
K weight vectors sit on the grid cells (α, β) of a plane

    w(α, β) = w_O + s·(α·w_right + β·w_up)                                   (eq. 1 + App. A)

whose only trainable numbers are θ = {w_O, w_up, φ_right, s} (3n + 1, whatever K is). The plane is fitted so that
the loss over it draws a binary picture: low cross-entropy on black cells, high on white cells (eq. 3). Many
plane points are evaluated as ONE vectorised forward pass (``torch.func.vmap`` over ``functional_call`` with the
points' stacked weight vectors), never as a Python loop over points.

Sections: patterns (pictures drawn by the pipeline, random masks), the plane and its objective, fitting,
landscape evaluation, and the study's two experiments, the job functions the rules call (``run_search``,
``run_bn_experiment``). The torch-free analysis of their outputs is lossatlas/analysis/loss_patterns.py (apart,
so that editing it reruns no search).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from lossatlas.io import atomic_path, write_json
from lossatlas.progress import Progress

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ patterns

PICTURES = ("ring", "cross", "smiley", "heart", "spiral", "checker", "triangle")


def draw_picture(name: str, size: int = 128) -> np.ndarray:
    """A binary picture made by the pipeline itself: ``True`` = black (a low-loss cell), shape (size, size).

    The paper's pictures are icons from flaticon.com (Acknowledgments), which we do not download; instead
    ``name`` is either one of ``PICTURES`` (drawn procedurally in numpy) or ``text:<string>``, the string
    rendered with Pillow's default bitmap font and scaled to fill the square.
    """
    if name.startswith("text:"):
        return _render_text(name[len("text:"):], size)
    # Pixel centres in [-1, 1]^2, y pointing up so pictures are drawn the right way round.
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)
    r = np.hypot(x, y)
    if name == "ring":
        return (r > 0.45) & (r < 0.8)
    if name == "cross":
        return ((np.abs(x) < 0.2) | (np.abs(y) < 0.2)) & (np.maximum(np.abs(x), np.abs(y)) < 0.85)
    if name == "smiley":
        face = (r > 0.72) & (r < 0.92)
        eyes = (np.hypot(x + 0.32, y - 0.3) < 0.14) | (np.hypot(x - 0.32, y - 0.3) < 0.14)
        mouth = (np.abs(np.hypot(x, y - 0.1) - 0.5) < 0.09) & (y < -0.05)
        return face | eyes | mouth
    if name == "heart":
        # (x² + y² − 1)³ − x² y³ ≤ 0, scaled into the square.
        hx, hy = x * 1.35, y * 1.35 + 0.15
        return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    if name == "spiral":
        theta = np.arctan2(y, x)
        # Archimedean spiral r = a·(θ + 2πk): a band around each turn.
        turn = (r / 0.16 - theta / (2 * np.pi)) % 1.0
        return (np.abs(turn - 0.5) < 0.22) & (r < 0.95) & (r > 0.05)
    if name == "checker":
        return ((np.floor((x + 1) * 2).astype(int) + np.floor((y + 1) * 2).astype(int)) % 2) == 0
    if name == "triangle":
        return (y > -0.7) & (y < 0.8 - 1.73 * np.abs(x))
    raise ValueError(f"unknown picture '{name}': use one of {', '.join(PICTURES)} or 'text:<string>'")


def _render_text(text: str, size: int) -> np.ndarray:
    """``text`` in Pillow's default font (its scalable version when FreeType is available, else the bitmap
    one), cropped to its ink, centred in a square and resized to size×size."""
    from PIL import Image, ImageDraw, ImageFont

    if not text:
        raise ValueError("picture 'text:' needs a non-empty string")
    try:
        font = ImageFont.load_default(size=4 * size)
    except (TypeError, ImportError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=255, font=font)
    side = int(max(canvas.size) * 1.1)
    square = Image.new("L", (side, side), 0)
    square.paste(canvas, ((side - canvas.size[0]) // 2, (side - canvas.size[1]) // 2))
    return np.asarray(square.resize((size, size), Image.BOX)) > 127


def downsample_picture(picture: np.ndarray, grid: int) -> np.ndarray:
    """The picture's parametrisation on a grid×grid plane (App. A: "we downsample an image to a size w × h").

    Each cell is black when at least half of the picture's pixels it covers are black (area average, then
    threshold 0.5): our choice, the paper does not say how it binarises.
    """
    from PIL import Image

    image = Image.fromarray((np.asarray(picture, dtype=bool) * 255).astype(np.uint8))
    return np.asarray(image.resize((grid, grid), Image.BOX)) >= 127.5


def random_mask(size: int, fill_probability: float, seed: int, frame: bool = False) -> np.ndarray:
    """A size×size random binary mask, each cell black (low loss) with probability p (§4.2, Fig 3a).

    The paper says pixels are "masked" with probability p without saying which colour that is; we follow the
    released code (p = probability of a low-loss cell). ``frame = False`` (the paper's reading: §4.2 describes
    30×30 random masks, nothing else) draws every cell. ``frame = True`` is the released generator
    (universome/loss-patterns, src/trainers/mask_trainer.py, ``generate_square_mask`` + ``randomly_fill_square``):
    the outer ring of cells is white (high loss), the next ring black, and only the (size−4)×(size−4) interior
    is random, so both colours are always present.
    """
    if not 0.0 <= fill_probability <= 1.0:
        raise ValueError(f"fill probability must lie in [0, 1], got {fill_probability}")
    rng = np.random.default_rng(seed)
    if not frame:
        return rng.random((size, size)) < fill_probability
    if size < 4:
        raise ValueError(f"a framed mask needs size >= 4 (two rings of frame), got {size}")
    mask = np.zeros((size, size), dtype=bool)
    mask[1:-1, 1:-1] = True  # the black second ring (its inside is overwritten below)
    mask[2:-2, 2:-2] = rng.random((size - 4, size - 4)) < fill_probability
    return mask


def trainable_cells(mask: np.ndarray) -> np.ndarray:
    """Cells used for training: those with at least one 8-neighbour (inside the grid) of the other colour.

    App. A: "we do not use the pixels which are surrounded by the pixels of the same class". A colour whose every
    cell is surrounded by its own colour (a one-colour mask) keeps all its cells, so no colour present in the
    mask is left without a training signal.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, mode="edge")  # edge padding: outside the grid counts as the same colour
    h, w = mask.shape
    differs = np.zeros_like(mask)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                differs |= padded[1 + di : 1 + di + h, 1 + dj : 1 + dj + w] != mask
    for colour in (True, False):
        if not (differs & (mask == colour)).any():
            differs |= mask == colour
    return differs


def cell_coordinates(height: int, width: int) -> np.ndarray:
    """(α, β) of every cell of a height×width grid, row-major, as float32 (height·width, 2).

    α = column − width//2 (to the right), β = height//2 − row (upwards): integer pixel coordinates centred on
    the plane's origin w_O, as in the released code (FIGURES.md §4.3).
    """
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([cols - width // 2, height // 2 - rows], axis=-1).reshape(-1, 2).astype(np.float32)


# ----------------------------------------------------------------------------------------- plane and objective


def prepare_template(model):
    """Make ``model`` a stateless template for plane points: BN always normalises with batch statistics.

    Every point of the plane is a different network, so running statistics collected for one would be wrong for
    all others. We therefore use the statistics of the evaluated mini-batch, in training and in evaluation alike,
    as the released code effectively does (it resets the running statistics to 0/1 whenever it loads a point's
    weights). BN layers get ``track_running_stats = False`` and no running buffers; dropout is off (eval mode).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def gram_schmidt_equal_norm(phi_right, w_up):
    """w_right from φ_right (eq. 2): ŵ = φ − (⟨φ, w_up⟩/‖w_up‖²)·w_up, w_right = (‖w_up‖/‖ŵ‖)·ŵ.

    The paper prints ‖ŵ_up‖ in the numerator, a typo for ‖w_up‖ (FIGURES.md §4.3); with it, w_right ⊥ w_up and
    ‖w_right‖ = ‖w_up‖. Differentiable in both arguments.
    """
    w_hat = phi_right - (torch.dot(phi_right, w_up) / torch.dot(w_up, w_up)) * w_up
    return w_hat * (w_up.norm() / w_hat.norm())


def mpo_objective(ce_black, ce_white, white_ce_clamp: float):
    """Eq. 3 as a loss to minimise: mean black-cell CE − mean white-cell min(CE, clamp).

    ``ce_black`` (K_b,) and ``ce_white`` (K_w,) are each cell's mini-batch-mean cross-entropy. The paper's eq. 3
    minimises CE on black cells (P₋) and maximises it on white cells (P₊); App. B thresholds the white-cell CE at
    2.5 ("otherwise it was too easy for the model just to have a very large cross-entropy value everywhere"), so
    a white cell above the clamp gives no gradient. An empty colour contributes nothing.
    """
    zero = ce_black.new_zeros(()) if ce_black.numel() else ce_white.new_zeros(())
    black = ce_black.mean() if ce_black.numel() else zero
    white = torch.clamp(ce_white, max=white_ce_clamp).mean() if ce_white.numel() else zero
    return black - white


def mpo_cell_terms(ce, is_black, n_black, n_white, white_ce_clamp: float):
    """Each drawn cell's share of eq. 3: CE/|black| for a black cell, −min(CE, clamp)/|white| for a white one;
    their sum over a plane's drawn cells is ``mpo_objective``. ``n_black`` / ``n_white``: the drawn cells of
    each colour of the cell's plane (numbers or per-cell tensors)."""
    black_term = ce / torch.clamp(torch.as_tensor(n_black), min=1)
    white_term = -torch.clamp(ce, max=white_ce_clamp) / torch.clamp(torch.as_tensor(n_white), min=1)
    return torch.where(is_black, black_term, white_term)


class Plane(torch.nn.Module):
    """A 2-D plane in the weight space of ``model``: θ = {w_O, w_up, φ_right, s}, 3n + 1 trainable numbers.

    ``weights(coords)`` gives the flat weight vectors w(α, β) = w_O + s·(α·w_right + β·w_up) of K points
    (eq. 1 with the scale of App. A); ``logits(coords, x)`` runs all K networks on one input batch as a single
    vmapped ``functional_call``: (K, B, num_classes). The template model's own parameters are not part of
    θ (it is held outside the module's parameter registry).
    """

    def __init__(self, model, w_origin, w_up, phi_right, scale_init: float):
        super().__init__()
        object.__setattr__(self, "template", prepare_template(model))
        self.param_names = [name for name, _ in model.named_parameters()]
        self.param_shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.param_numels = [p.numel() for _, p in model.named_parameters()]
        n = sum(self.param_numels)
        for vec, what in ((w_origin, "w_origin"), (w_up, "w_up"), (phi_right, "phi_right")):
            if vec.shape != (n,):
                raise ValueError(f"{what} has shape {tuple(vec.shape)}, the model has {n} parameters")
        self.w_origin = torch.nn.Parameter(w_origin.clone())
        self.w_up = torch.nn.Parameter(w_up.clone())
        self.phi_right = torch.nn.Parameter(phi_right.clone())
        self.scale = torch.nn.Parameter(torch.tensor(float(scale_init), dtype=w_origin.dtype))

    @property
    def n_weights(self) -> int:
        return sum(self.param_numels)

    def w_right(self):
        return gram_schmidt_equal_norm(self.phi_right, self.w_up)

    def weights(self, coords):
        """(K, n) flat weight vectors of the points at ``coords`` (K, 2) = (α, β)."""
        directions = torch.stack([self.w_right(), self.w_up])  # (2, n)
        return self.w_origin + self.scale * (coords.to(self.w_origin.dtype) @ directions)

    def _one_point(self, flat, x):
        chunks = torch.split(flat, self.param_numels)
        params = {name: c.view(shape) for name, c, shape in zip(self.param_names, chunks,
                                                                 self.param_shapes, strict=True)}
        return functional_call(self.template, params, (x,))

    def logits(self, coords, x):
        """(K, B, C) logits of the K points on the input batch x (B, ...): one vectorised forward pass."""
        return self.logits_of(self.weights(coords), x)

    def logits_of(self, weights, x):
        """(K, B, C) logits of K flat weight vectors (K, n) of this architecture, as one vmapped pass."""
        return vmap(self._one_point, in_dims=(0, None))(weights, x)




def make_plane(model_factory, scale_init: float, seed: int):
    """A plane with w_O, w_up, φ_right each taken from a freshly built and initialised network (App. A).

    ``model_factory(generator)`` returns an initialised model (the job functions use the architecture's
    constructor followed by Xavier initialisation, as App. A does for "each layer"). Seeds seed, seed+1, seed+2
    give the three vectors, so a plane is a pure function of its seed.
    """
    vectors = []
    template = None
    for k in range(3):
        generator = torch.Generator().manual_seed(int(seed) * 3 + k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) * 3 + k)
            model = model_factory(generator)
        vectors.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())
        if template is None:
            template = model
    return Plane(template, vectors[0], vectors[1], vectors[2], scale_init)


# ------------------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitSettings:
    """How a plane is fitted (App. A/B; paper values in configs/loss_patterns.yaml).

    ``cells_per_update`` cells of EACH colour are drawn per iteration (the released config draws 50 black and
    50 white; the paper says "50 cells per update"), all evaluated on one shared data mini-batch.
    ``cells_per_pass`` bounds how many cells go through one forward/backward pass (gradients are accumulated
    over passes, which is exact because eq. 3 is a sum of per-cell terms); None = all drawn cells at once.
    ``eval_points_per_pass`` does the same for landscape evaluation.

    Choices the paper does not state, each off by default (docs/paper_choices.md):
    ``grad_clip``: the global gradient norm of each plane's θ is clipped to this value before the Adam step
    (universome/loss-patterns, src/trainers/mask_trainer.py: ``clip_grad_norm_`` with
    ``grad_clip_threshold: 100`` in every released config); None = no clipping.
    ``min_train_acc_gap``: the released trainer stops, and deletes, a run whose good − bad train accuracy gap is
    below this value (``good_and_bad_val_acc_diff_threshold: 0.01``, configs/random-squares.yml) at an epoch's
    end after ``gap_warmup_fraction`` of training (``diff_threshold_num_warmup_epochs: 30`` of
    ``max_num_epochs: 100`` = 0.3); such a plane stops training here too and is reported as dropped
    (``fit_planes``). ``gap_check_every``: iterations between checks; None = one epoch of the training set.
    ``augment``: training-batch image augmentation (lossatlas.image_augment.augment_batch: pad_crop, hflip,
    random_erasing), the released CIFAR-10 loader's (src/trainers/mask_trainer.py); None = none (the paper
    mentions none). Image inputs only.
    """

    iterations: int
    lr: float
    batch_size: int
    cells_per_update: int
    white_ce_clamp: float = 2.5
    scale_init: float = 0.1
    log_every: int = 10
    cells_per_pass: int | None = None
    eval_points_per_pass: int = 64
    grad_clip: float | None = None
    min_train_acc_gap: float | None = None
    gap_warmup_fraction: float = 0.3
    gap_check_every: int | None = None
    augment: dict | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> FitSettings:
        from lossatlas.image_augment import augment_errors

        known = {f for f in cls.__dataclass_fields__}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"studies.loss_patterns.fit: unknown key(s) {sorted(unknown)}")
        errs = augment_errors(cfg.get("augment"), "studies.loss_patterns.fit.augment")
        if errs:
            raise ValueError("; ".join(errs))
        return cls(**cfg)


def _sample(indices, k: int, generator):
    """k of ``indices`` without replacement (all of them when there are fewer)."""
    if len(indices) <= k:
        return indices
    return indices[torch.randperm(len(indices), generator=generator)[:k]]


def clip_plane_gradients(planes: list[Plane], max_norm: float) -> None:
    """Scale each plane's gradient so that its global L2 norm over θ is at most ``max_norm``: what
    ``torch.nn.utils.clip_grad_norm_(plane.parameters(), max_norm)`` does to each plane (factor
    max_norm / (norm + 1e-6) where it is below 1), with one host sync for all planes instead of one per plane."""
    grads = [[p.grad for p in plane.parameters() if p.grad is not None] for plane in planes]
    norms = torch.stack([torch.sqrt(sum((g.double() ** 2).sum() for g in group)) if group
                         else torch.zeros((), dtype=torch.float64) for group in grads])
    for group, norm in zip(grads, norms.tolist(), strict=True):
        factor = max_norm / (norm + 1e-6)
        if factor < 1.0:
            for g in group:
                g.mul_(factor)


def fit_planes(planes: list[Plane], x_train, y_train, masks: list[np.ndarray], settings: FitSettings,
               seed: int, lrs: list[float] | None = None, input_fill=0.0) -> list[dict]:
    """Minimise eq. 3 over θ = {w_O, w_up, φ_right, s} of each plane with Adam (App. A/B); returns their logs.

    Each iteration draws, per plane, ``cells_per_update`` trainable black and white cells of its mask (see
    ``trainable_cells``), and one mini-batch of ``batch_size`` training examples shared by all planes; every
    drawn cell of every plane is evaluated on that batch in ONE vmapped forward pass, and each cell's
    mini-batch-mean CE enters its plane's ``mpo_objective``. The planes are independent: the summed objective
    separates and Adam is element-wise, so fitting several planes together (the BN experiment fits all fill
    probabilities of a run at once, far cheaper for small networks) gives each what it would get alone with
    the same mini-batches. Log per plane: objective, black-cell CE, white-cell CE and the scale s, every
    ``log_every`` iterations; ``dropped_at``: the iteration after which the run selection
    (``settings.min_train_acc_gap``) stopped the plane, −1 if it never did; ``train_acc_gap``: the gap at each
    selection check.

    Run selection: the gap is the mean train accuracy of the drawn black cells minus that of the drawn white
    cells, averaged over the training steps since the last check (each on its own mini-batch). The released
    trainer measures it after each epoch in one pass over the training set, one random cell per batch; the
    steps' own accuracies estimate the same quantity without another pass.

    ``lrs``: one Adam learning rate per plane (a learning-rate grid fitted together; Adam is element-wise, so
    each plane gets what it would alone); None = ``settings.lr`` for all. ``settings.augment``: each step's
    shared mini-batch is augmented (lossatlas.image_augment.augment_batch) with draws from its own generator
    seeded by ``seed``, so the batches' indices and the cells drawn are the same with or without it;
    ``input_fill``: the standardised value of a black pixel (what padding and erasing write).
    """
    if len(planes) != len(masks) or not planes:
        raise ValueError(f"fit_planes: {len(planes)} planes but {len(masks)} masks")
    device = planes[0].w_origin.device
    data_generator = torch.Generator().manual_seed(int(seed))
    cell_generators = [torch.Generator().manual_seed(int(seed) * 7919 + 1 + i) for i in range(len(planes))]
    layout = []  # per plane: (coords, black cell indices, white cell indices)
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        usable, flat = trainable_cells(mask).reshape(-1), mask.reshape(-1)
        layout.append((torch.from_numpy(cell_coordinates(*mask.shape)).to(device),
                       torch.from_numpy(np.flatnonzero(flat & usable)),
                       torch.from_numpy(np.flatnonzero(~flat & usable))))
    if lrs is not None and len(lrs) != len(planes):
        raise ValueError(f"fit_planes: {len(lrs)} learning rates for {len(planes)} planes")
    if settings.augment:
        from lossatlas.image_augment import augment_batch

        if x_train.ndim != 4:
            raise ValueError(f"studies.loss_patterns fit.augment: set for inputs of shape {tuple(x_train.shape[1:])}; "
                             "augmentation applies to image inputs (C, H, W) only")
        augment_generator = torch.Generator().manual_seed(int(seed) * 7919 + 7918)
    lrs = [settings.lr] * len(planes) if lrs is None else [float(lr) for lr in lrs]
    optimizer = torch.optim.Adam([{"params": list(plane.parameters()), "lr": lr}
                                  for plane, lr in zip(planes, lrs, strict=True)], lr=settings.lr)
    n_train = len(y_train)
    check_every = settings.gap_check_every or math.ceil(n_train / min(settings.batch_size, n_train))
    histories = [{"iteration": [], "objective": [], "ce_black": [], "ce_white": [], "scale": [],
                  "gap_iteration": [], "train_acc_gap": [], "dropped_at": -1} for _ in planes]
    selecting = settings.min_train_acc_gap is not None  # the run selection needs each step's cell accuracies
    gap_sums = np.zeros(len(planes))  # Σ over steps since the last check of (black acc − white acc)
    gap_steps = np.zeros(len(planes))
    active = [True] * len(planes)
    progress = Progress(f"MPO fit of {len(planes)} plane(s)", settings.iterations, unit="iteration")
    for it in range(settings.iterations):
        if not any(active):
            break
        # The drawn cells of every active plane, as parallel lists: plane index, cell index, colour, counts.
        owner, cell, black_flag, counts = [], [], [], {}
        for i, ((_, black, white), gen) in enumerate(zip(layout, cell_generators, strict=True)):
            if not active[i]:
                continue
            cells_b = _sample(black, settings.cells_per_update, gen)
            cells_w = _sample(white, settings.cells_per_update, gen)
            owner += [i] * (len(cells_b) + len(cells_w))
            cell += cells_b.tolist() + cells_w.tolist()
            black_flag += [True] * len(cells_b) + [False] * len(cells_w)
            counts[i] = (len(cells_b), len(cells_w))
        batch = torch.randint(n_train, (min(settings.batch_size, n_train),), generator=data_generator).to(device)
        xb, yb = x_train[batch], y_train[batch]
        if settings.augment:
            xb = augment_batch(xb, settings.augment, augment_generator, input_fill)
        optimizer.zero_grad(set_to_none=True)
        ce_all = torch.empty(len(cell), device=device)
        acc_all = torch.empty(len(cell), device=device) if selecting else None
        step = settings.cells_per_pass or len(cell)
        for start in range(0, len(cell), step):
            part = range(start, min(start + step, len(cell)))
            # Items are ordered by plane, so each plane's cells in this pass form one contiguous run.
            pieces = []
            for i in sorted({owner[j] for j in part}):
                idx = torch.tensor([cell[j] for j in part if owner[j] == i], device=device)
                pieces.append(planes[i].weights(layout[i][0][idx]))
            weights = torch.cat(pieces)
            logits = planes[0].logits_of(weights, xb)  # (cells in this pass, B, C): one vmapped pass
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), yb.expand(len(part), -1).flatten(),
                                                   reduction="none").view(len(part), -1).mean(dim=1)
            flags = torch.tensor([black_flag[j] for j in part], device=device)
            n_b = torch.tensor([counts[owner[j]][0] for j in part], device=device)
            n_w = torch.tensor([counts[owner[j]][1] for j in part], device=device)
            terms = mpo_cell_terms(ce, flags, n_b, n_w, settings.white_ce_clamp)
            terms.sum().backward()
            ce_all[start : start + len(part)] = ce.detach()
            if selecting:
                acc_all[start : start + len(part)] = (logits.detach().argmax(-1) == yb).float().mean(dim=1)
        if settings.grad_clip is not None:
            clip_plane_gradients([plane for i, plane in enumerate(planes) if active[i]], settings.grad_clip)
        optimizer.step()
        progress.update(it + 1, loss=lambda ce=ce_all: float(ce.mean()))
        logging = it % settings.log_every == 0 or it == settings.iterations - 1
        if selecting or logging:
            owner_t, flag_t = torch.tensor(owner, device=device), torch.tensor(black_flag, device=device)
        if selecting:
            for i in counts:
                acc_b, acc_w = acc_all[(owner_t == i) & flag_t], acc_all[(owner_t == i) & ~flag_t]
                if len(acc_b) and len(acc_w):
                    gap_sums[i] += float(acc_b.mean() - acc_w.mean())
                    gap_steps[i] += 1
            if (it + 1) % check_every == 0 and it + 1 > settings.gap_warmup_fraction * settings.iterations:
                for i in counts:
                    gap = gap_sums[i] / gap_steps[i] if gap_steps[i] else math.nan
                    histories[i]["gap_iteration"].append(it)
                    histories[i]["train_acc_gap"].append(gap)
                    if gap < settings.min_train_acc_gap:
                        active[i] = False
                        histories[i]["dropped_at"] = it
                        log.info("plane %d dropped after iteration %d: train accuracy gap %.4f < %g", i, it, gap,
                                 settings.min_train_acc_gap)
            if (it + 1) % check_every == 0:
                gap_sums[:], gap_steps[:] = 0.0, 0.0
        if logging:
            for i, (history, plane) in enumerate(zip(histories, planes, strict=True)):
                ce_b, ce_w = ce_all[(owner_t == i) & flag_t], ce_all[(owner_t == i) & ~flag_t]
                history["iteration"].append(it)
                history["objective"].append(float(mpo_objective(ce_b, ce_w, settings.white_ce_clamp))
                                            if i in counts else math.nan)
                history["ce_black"].append(float(ce_b.mean()) if len(ce_b) else math.nan)
                history["ce_white"].append(float(ce_w.mean()) if len(ce_w) else math.nan)
                history["scale"].append(float(plane.scale.detach()))
    return histories


def fit_plane(plane: Plane, x_train, y_train, mask: np.ndarray, settings: FitSettings, seed: int) -> dict:
    """Fit one plane to one mask (``fit_planes`` with a single plane); returns its training log."""
    return fit_planes([plane], x_train, y_train, [mask], settings, seed)[0]


# ------------------------------------------------------------------------------------ landscape evaluation


@torch.no_grad()
def evaluate_plane(plane: Plane, coords, x, y, batch_size: int, points_per_pass: int = 64):
    """Mean CE and accuracy of every point at ``coords`` (K, 2) over all examples (x, y): two (K,) arrays.

    Examples are cut into near-equal chunks of about ``batch_size`` (BN normalises with each chunk's statistics,
    like the training mini-batches); each chunk is run through ``points_per_pass`` points at a time as one
    vectorised pass.
    """
    n = len(y)
    chunks = np.array_split(np.arange(n), max(1, round(n / batch_size)))
    ce_sum = torch.zeros(len(coords), dtype=torch.float64)
    correct = torch.zeros(len(coords), dtype=torch.float64)
    for start in range(0, len(coords), points_per_pass):
        pts = coords[start : start + points_per_pass]
        for idx in chunks:
            xb, yb = x[idx], y[idx]
            logits = plane.logits(pts, xb).float()  # (k, b, C)
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), yb.expand(len(pts), -1).flatten(),
                                                   reduction="none").view(len(pts), -1)
            ce_sum[start : start + len(pts)] += ce.sum(dim=1).double().cpu()
            correct[start : start + len(pts)] += (logits.argmax(-1) == yb).sum(dim=1).double().cpu()
    return (ce_sum / n).numpy(), (correct / n).numpy()


# ---------------------------------------------------------------------------------------------------- jobs


def split_tensors(data, split: str, device, max_examples: int | None = None, subset_seed: int = 0):
    """(x, y) of one split of a loaded dataset as float32 / int64 tensors on ``device``; uint8 images scaled to
    [0, 1] and standardised with the file's channel_mean/channel_std. ``max_examples`` keeps a fixed random
    subset (the same for every job reading this split), to bound the cost of evaluating every cell."""
    if data.task != "classification":
        raise ValueError(f"{data.path}: loss_patterns needs a classification dataset, not {data.task}")
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    if max_examples is not None and max_examples < len(y):
        keep = np.sort(np.random.default_rng(subset_seed).permutation(len(y))[:max_examples])
        x, y = x[keep], y[keep]
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype == np.uint8:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(data.attrs["channel_mean"]).view(shape)
        std = torch.tensor(data.attrs["channel_std"]).view(shape)
        xt = (xt.float() / 255.0 - mean) / std
    return xt.float().to(device), torch.from_numpy(y).long().to(device)


def black_pixel(data):
    """What a black pixel (raw value 0) becomes after ``split_tensors``' standardisation, per channel: the value
    the released CIFAR-10 loader's padding and random erasing write (both before its Normalize). 0.0 for inputs
    that are not uint8 images (already float: nothing to undo)."""
    if data.x_train.dtype != np.uint8:
        return 0.0
    mean, std = np.asarray(data.attrs["channel_mean"]), np.asarray(data.attrs["channel_std"])
    return torch.from_numpy(-mean / std).float()


def select_by_train_gap(gaps: list[float]) -> int:
    """Index of the learning rate a search keeps: the largest black − white train accuracy gap (NaN never wins;
    ties: the first listed). The released CIFAR-10 figures were picked by hand from the runs of the grid
    (universome/loss-patterns notebooks/cifar10-images.ipynb, ``chosen_images``); this rule is ours."""
    best = -1
    for i, gap in enumerate(gaps):
        if not math.isnan(gap) and (best < 0 or gap > gaps[best]):
            best = i
    return max(best, 0)


def plane_for(arch: dict, input_shape, num_classes: int, scale_init: float, seed: int, device) -> Plane:
    """A plane over the architecture ``arch`` (a config ``architectures:`` entry), each of its three vectors
    Xavier-initialised layer by layer (App. A; BN scales U[-offset, offset] for App. C's offset BN)."""
    from lossatlas.models import build_model, initialize

    def factory(generator):
        model = build_model(arch, input_shape, num_classes, dropout=False)
        return initialize(model, {"scheme": "xavier"}, generator)

    return make_plane(factory, scale_init, seed).to(device)


def _cell_means(values: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean of a per-cell map over black cells and over white cells (NaN for a colour that is absent)."""
    flat, m = values.reshape(-1), mask.reshape(-1)
    black = float(flat[m].mean()) if m.any() else math.nan
    white = float(flat[~m].mean()) if (~m).any() else math.nan
    return black, white


def search_summary(mask: np.ndarray, maps: dict[str, dict[str, np.ndarray]]) -> dict:
    """Per split: mean CE / accuracy on black and white cells and the accuracy gap black − white (the quantity
    of Fig 4a, FIGURES.md §4.3); plus the Pearson r between the train and test log-CE maps (§4.1: train and
    test landscapes "almost indistinguishable")."""
    out: dict[str, Any] = {}
    for split, m in maps.items():
        acc_b, acc_w = _cell_means(m["acc"], mask)
        ce_b, ce_w = _cell_means(m["ce"], mask)
        out[split] = {"acc_black": acc_b, "acc_white": acc_w, "acc_gap": acc_b - acc_w,
                      "ce_black": ce_b, "ce_white": ce_w}
    if "train" in maps and "test" in maps:
        a, b = np.log(maps["train"]["ce"].ravel()), np.log(maps["test"]["ce"].ravel())
        out["train_test_log_ce_pearson"] = float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else math.nan
    return out


def run_search(spec: dict, dataset_path: str, out_h5: str, out_json: str) -> dict:
    """One pattern search (§4.1, Figs 1, 2, 5, 6): draw the picture, down-sample it to the grid, fit a plane,
    evaluate loss and accuracy of every cell on train and test.

    ``spec``: search (name), picture, picture_size, grid, dataset, architecture (config entry with name),
    fit (FitSettings keys), eval_examples (per split; null = all), seed, device; optional lr_grid. Writes
    ``out_h5`` (picture, mask, trainable cells, per-split ce/acc maps (grid, grid), training log) and
    ``out_json`` (the summary).

    ``lr_grid`` (a list of learning rates; the released CIFAR-10 config's ``hpo.grid.lr``): one plane per rate,
    all from the same initialisation (the released runs share ``random_seed``) and fitted together on the same
    batches; each is evaluated on the train split and the one with the largest black − white train accuracy
    gap is kept (``select_by_train_gap``) and evaluated on test. The summary then adds ``lr`` (kept) and
    ``lr_grid`` (each rate's train gap), the h5 file ``lr_grid/lr`` and ``lr_grid/train_acc_gap``.
    """
    import h5py

    from lossatlas.datasets import load_dataset
    from lossatlas.devices import resolve_device

    device = resolve_device(spec.get("device", "auto"))
    settings = FitSettings.from_config(spec["fit"])
    picture = draw_picture(spec["picture"], int(spec["picture_size"]))
    mask = downsample_picture(picture, int(spec["grid"]))
    data = load_dataset(dataset_path)
    x_train, y_train = split_tensors(data, "train", device)
    lr_grid = [float(lr) for lr in spec["lr_grid"]] if spec.get("lr_grid") else None
    lrs = lr_grid or [settings.lr]
    planes = [plane_for(spec["architecture"], data.input_shape, data.num_classes, settings.scale_init,
                        int(spec["seed"]), device) for _ in lrs]
    plane = planes[0]
    log.info("search %s: %d cells, n = %d weights, %d trainable numbers, learning rate(s) %s", spec["search"],
             mask.size, plane.n_weights, sum(p.numel() for p in plane.parameters()), lrs)
    histories = fit_planes(planes, x_train, y_train, [mask] * len(planes), settings, int(spec["seed"]), lrs=lrs,
                           input_fill=black_pixel(data) if settings.augment else 0.0)
    coords = torch.from_numpy(cell_coordinates(*mask.shape)).to(device)
    evaluation = {split: split_tensors(data, split, device, spec.get("eval_examples")) for split in ("train", "test")}

    def maps_of(candidate, split):
        ce, acc = evaluate_plane(candidate, coords, *evaluation[split], settings.batch_size,
                                 settings.eval_points_per_pass)
        return {"ce": ce.reshape(mask.shape), "acc": acc.reshape(mask.shape)}

    train_maps = [maps_of(candidate, "train") for candidate in planes]
    gaps = [search_summary(mask, {"train": m})["train"]["acc_gap"] for m in train_maps]
    keep = select_by_train_gap(gaps) if lr_grid else 0
    plane, history = planes[keep], histories[keep]
    maps = {"train": train_maps[keep], "test": maps_of(plane, "test")}
    summary = {"search": spec["search"], "picture": spec["picture"], "dataset": spec["dataset"],
               "architecture": spec["architecture"]["name"], "grid": int(spec["grid"]),
               "n_weights": plane.n_weights, "trainable_numbers": sum(p.numel() for p in plane.parameters()),
               "final_scale": float(plane.scale.detach()), **search_summary(mask, maps)}
    if lr_grid:
        summary["lr"] = lrs[keep]
        summary["lr_grid"] = [{"lr": lr, "train_acc_gap": gap} for lr, gap in zip(lrs, gaps, strict=True)]
    log.info("search %s: %s", spec["search"], json.dumps(summary))
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["spec"] = json.dumps(spec, sort_keys=True)
        f.attrs["summary"] = json.dumps(summary, sort_keys=True)
        f["picture"] = picture
        f["mask"] = mask
        f["trainable"] = trainable_cells(mask)
        for split, m in maps.items():
            for key, value in m.items():
                f[f"{split}/{key}"] = value
        for key, values in history.items():
            f[f"log/{key}"] = np.asarray(values)
        if lr_grid:
            f["lr_grid/lr"] = np.asarray(lrs)
            f["lr_grid/train_acc_gap"] = np.asarray(gaps)
    write_json(out_json, summary)
    return summary


def mask_seed(fill_probability: float, seed: int) -> int:
    """The random mask of (p, run seed): the same for the models with and without BN (§4.2)."""
    return int(seed) * 1000 + int(round(float(fill_probability) * 100))


DELTA_CELLS = ("all", "trainable")


def fig4_cell_means(values: np.ndarray, mask: np.ndarray, delta_cells: str = "all") -> tuple[float, float]:
    """Fig 4's black-cell and white-cell means of a per-cell map (m, m): over ``all`` cells of each colour
    (FIGURES.md §4.3), or over the ``trainable`` ones only (``trainable_cells``; the released notebook's
    ``compute_diff_from_values`` averages over its ternary mask's ±1 cells, the cells used in training)."""
    if delta_cells not in DELTA_CELLS:
        raise ValueError(f"delta_cells must be one of {DELTA_CELLS}, got {delta_cells!r}")
    mask = np.asarray(mask, dtype=bool)
    keep = trainable_cells(mask) if delta_cells == "trainable" else np.ones_like(mask)
    return _cell_means(np.asarray(values)[keep], mask[keep])


def run_bn_experiment(spec: dict, dataset_path: str, out_h5: str) -> None:
    """One run (seed) of the BN experiment for one model under one protocol (§4.2, Figs 3, 4): for every fill
    probability p, fit a plane to the random mask of (p, seed) and evaluate test CE and accuracy of every cell.

    ``spec``: protocol, variant (without_bn | with_bn), architecture, dataset, mask_size, mask_frame (see
    ``random_mask``), delta_cells, fill_probabilities, seed, fit, eval_examples, device. ``delta_cells`` says
    which cells Fig 4's means run over: ``all`` cells of the mask (FIGURES.md §4.3: "mean test accuracy in black
    cells − mean in white cells"), or only the ``trainable`` ones (``trainable_cells``: the released notebook,
    universome/loss-patterns notebooks/visualizations.ipynb, ``compute_diff_from_values``, averages over the
    cells its ternary mask marks ±1, i.e. the cells used in training). Writes (P = number of p values, m = mask
    size) masks and trainable (P, m, m), test_ce and test_acc (P, m, m), acc_black / acc_white (P,) (mean test
    accuracy over the black / white cells that ``delta_cells`` selects), dropped_at (P,) (the iteration the run
    selection stopped the plane, −1 = kept), final scale (P,) and the objective log (P, L).
    """
    import h5py

    from lossatlas.datasets import load_dataset
    from lossatlas.devices import resolve_device

    delta_cells = spec.get("delta_cells", "all")
    if delta_cells not in DELTA_CELLS:
        raise ValueError(f"delta_cells must be one of {DELTA_CELLS}, got {delta_cells!r}")
    device = resolve_device(spec.get("device", "auto"))
    settings = FitSettings.from_config(spec["fit"])
    size, seed = int(spec["mask_size"]), int(spec["seed"])
    data = load_dataset(dataset_path)
    x_train, y_train = split_tensors(data, "train", device)
    x_test, y_test = split_tensors(data, "test", device, spec.get("eval_examples"))
    coords = torch.from_numpy(cell_coordinates(size, size)).to(device)
    out: dict[str, list] = {k: [] for k in ("masks", "trainable", "test_ce", "test_acc", "acc_black",
                                            "acc_white", "dropped_at", "final_scale", "objective")}
    fills = [float(p) for p in spec["fill_probabilities"]]
    masks = [random_mask(size, p, mask_seed(p, seed), frame=bool(spec.get("mask_frame", False))) for p in fills]
    # Plane i of run `seed` starts from the same vectors for every p (seeds differ across runs, not across p).
    planes = [plane_for(spec["architecture"], data.input_shape, data.num_classes, settings.scale_init, seed,
                        device) for _ in fills]
    histories = fit_planes(planes, x_train, y_train, masks, settings, seed,
                           input_fill=black_pixel(data) if settings.augment else 0.0)
    for p, mask, plane, history in zip(fills, masks, planes, histories, strict=True):
        ce, acc = evaluate_plane(plane, coords, x_test, y_test, settings.batch_size,
                                 settings.eval_points_per_pass)
        usable = trainable_cells(mask)
        acc_b, acc_w = fig4_cell_means(acc.reshape(mask.shape), mask, delta_cells)
        log.info("%s %s seed %d p %.2f: acc black %.3f white %.3f (s = %.4f)%s", spec.get("protocol", ""),
                 spec["variant"], seed, p, acc_b, acc_w, float(plane.scale.detach()),
                 f", dropped after iteration {history['dropped_at']}" if history["dropped_at"] >= 0 else "")
        for key, value in (("masks", mask), ("trainable", usable), ("test_ce", ce.reshape(mask.shape)),
                           ("test_acc", acc.reshape(mask.shape)), ("acc_black", acc_b), ("acc_white", acc_w),
                           ("dropped_at", history["dropped_at"]), ("final_scale", float(plane.scale.detach())),
                           ("objective", history["objective"])):
            out[key].append(value)
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["spec"] = json.dumps(spec, sort_keys=True)
        f["fill_probabilities"] = np.asarray(spec["fill_probabilities"], dtype=np.float64)
        for key, values in out.items():
            f[key] = np.asarray(values)
