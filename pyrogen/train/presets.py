r"""Published and measured training settings, in one place for the CLI, benchmarks and users.

* :data:`PRESETS` — the papers' optimizers by adversarial loss name: GAN (and nsgan, hinge) Adam
  2e-4, β = (0.5, 0.999), k = 1 (Goodfellow et al. 2014; Radford et al. 2016); WGAN RMSprop 5e-5,
  c = 0.01, k = 5 (Arjovsky et al. 2017); WGAN-GP Adam 1e-4, β = (0, 0.9), λ = 10, k = 5
  (Gulrajani et al. 2017).
* :data:`TOY_DEFAULTS` / :data:`IMAGE_DEFAULTS` — what ``pyrogen gan`` uses on 1-D/2-D toy
  mixtures and on images when no flag says otherwise (``benchmarks/gan_modes.py`` measures the toy
  ones, ``benchmarks/image_gan.py`` the image ones); :data:`IMAGE_LOSS_DEFAULTS` changes them per
  loss on images: hinge with a spectrally normalised critic (Miyato et al. 2018), k = 2, Adam
  2e-4, β = (0, 0.9); WGAN-GP the paper's k = 5, λ = 10, Adam 1e-4, β = (0, 0.9) (Gulrajani et
  al. 2017; the DCGAN critic has no BatchNorm); hinge 6000 generator steps, WGAN-GP 3000.
* :data:`VAE_DEFAULTS` / :data:`VAE_PRESETS` — what ``pyrogen vae`` uses without / with
  ``--preset``: ``burda2016`` is the setting of Burda et al. (2016), Table 1 (two layers of 200
  tanh units, 50 latent units, batch 20, Adam β = (0.9, 0.999), ε = 1e-4, learning rate
  1e-3·10^(−i/7) for 3^i passes, i = 0…7, dynamic binarization, K = 5000 for evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Preset:
    """Optimizer and schedule of a paper: ``optim`` is ``"adam"`` or ``"rmsprop"``."""

    optim: str
    lr: float
    critic_steps: int
    betas: tuple[float, float] | None = None
    loss_kwargs: dict[str, float] = field(default_factory=dict)


#: The original GAN's settings, also used for losses without a preset of their own.
DEFAULT_PRESET = Preset("adam", 2e-4, 1, (0.5, 0.999))

#: Paper defaults by loss name.
PRESETS: dict[str, Preset] = {
    "gan": DEFAULT_PRESET,
    "nsgan": DEFAULT_PRESET,
    "hinge": DEFAULT_PRESET,
    "wgan": Preset("rmsprop", 5e-5, 5, None, {"clip": 0.01}),
    "wgan-gp": Preset("adam", 1e-4, 5, (0.0, 0.9), {"penalty": 10.0}),
}


@dataclass(frozen=True)
class GANDefaults:
    """Defaults of ``pyrogen gan`` for one kind of data (``pack`` applies to gan/nsgan/hinge
    with the MLP critic; wgan and wgan-gp, and the convolutional critic, use 1).

    ``arch`` is ``"mlp"`` (:class:`~pyrogen.nn.GeneratorNet` / :class:`~pyrogen.nn.Critic` with
    ``hidden``) or ``"conv"`` (:class:`~pyrogen.nn.conv.ConvGeneratorNet` /
    :class:`~pyrogen.nn.conv.ConvCritic` with ``base_channels`` and ``spectral_norm``); ``lr``,
    ``betas`` and ``critic_steps`` of ``None`` mean the loss's paper values (:data:`PRESETS`),
    ``critic_lr`` of ``None`` the generator's ``lr``.
    """

    arch: str = "mlp"
    loss: str = "nsgan"
    steps: int = 20_000
    batch_size: int = 256
    pack: int = 2
    hidden: tuple[int, ...] = (256, 256, 256)
    latent_dim: int = 2
    lr_decay: float = 0.0
    ema: float = 0.999
    output: str = "identity"
    critic_activation: str = "relu"
    base_channels: int = 32
    spectral_norm: bool = False
    lr: float | None = None
    betas: tuple[float, float] | None = None
    critic_steps: int | None = None
    critic_lr: float | None = None


#: Toy mixtures (ring8, grid25, 1-D): measured in ``benchmarks/gan_modes.py``.
TOY_DEFAULTS = GANDefaults()

#: Images (digits, Fashion-MNIST, idx directories): DCGAN networks (BatchNorm generator,
#: LeakyReLU critic, base 32 channels), sigmoid output, no packing; with ``--arch mlp`` MLPs of
#: ``hidden`` units. 15 000 steps (~14 min on 28×28, one thread): Fashion-MNIST has 10, 10 and 9
#: of 10 classes in 5–15 % on seeds 0, 1 and 2 (at 9000: 10, 8, 9) and FCD 19–24 (24–35 at 9000);
#: EMA 0.999, a late learning-rate decay and nearest-neighbour upsampling do not help
#: (``benchmarks/README.md``).
IMAGE_DEFAULTS = GANDefaults(
    arch="conv",
    steps=15_000,
    batch_size=64,
    pack=1,
    hidden=(512, 512),
    latent_dim=32,
    ema=0.0,
    output="sigmoid",
    critic_activation="leaky_relu",
)

#: Per-loss changes to :data:`IMAGE_DEFAULTS` (``pyrogen gan --loss LOSS`` on images; a flag on
#: the command line wins), measured on 8×8 digits in ``benchmarks/image_gan.py``: hinge at the
#: DCGAN optimizer misses the class-coverage target (5/10 classes in 5-15 %, 8/10 with spectral
#: norm, 8/10 with spectral norm and k = 2), spectral norm + k = 2 + β = (0, 0.9) reaches it;
#: WGAN-GP reaches it with the paper's settings. A loss not listed (or with ``{}``) runs
#: :data:`IMAGE_DEFAULTS` with its paper optimizer (:data:`PRESETS`).
IMAGE_LOSS_DEFAULTS: dict[str, dict[str, object]] = {
    # measured in benchmarks/README.md (image_gan): every digit class at 3000 generator steps;
    # hinge needs 6000 for every Fashion-MNIST class on three seeds (3000: 10, 9, 8 classes)
    "hinge": {"spectral_norm": True, "critic_steps": 2, "betas": (0.0, 0.9), "steps": 6000},
    "wgan-gp": {"steps": 3000},
}


def image_defaults(loss: str) -> GANDefaults:
    """:data:`IMAGE_DEFAULTS` for ``loss`` with its :data:`IMAGE_LOSS_DEFAULTS` applied; the
    image default loss's own ``lr``/``betas`` do not carry over to another loss."""
    other = {} if loss == IMAGE_DEFAULTS.loss else {"loss": loss, "lr": None, "betas": None}
    return replace(IMAGE_DEFAULTS, **{**other, **IMAGE_LOSS_DEFAULTS.get(loss, {})})


@dataclass(frozen=True)
class VAESettings:
    """Settings of ``pyrogen vae`` a preset fixes (a flag given on the command line wins).

    ``lr_schedule`` is ``"constant"`` or ``"burda2016"``
    (:class:`pyrogen.train.schedule.StagewiseLR`: 1e-3·10^(−i/7) for 3^i of 3280 passes, the
    stages scaled to ``epochs``)."""

    epochs: int = 50
    latent_dim: int = 10
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    lr_schedule: str = "constant"
    binarize: str = "auto"
    num_is_samples: int = 5000


#: ``pyrogen vae`` without ``--preset``.
VAE_DEFAULTS = VAESettings()

#: ``pyrogen vae --preset NAME``.
VAE_PRESETS: dict[str, VAESettings] = {
    "burda2016": VAESettings(
        epochs=3280,
        latent_dim=50,
        hidden=(200, 200),
        activation="tanh",
        batch_size=20,
        lr=1e-3,
        betas=(0.9, 0.999),
        adam_eps=1e-4,
        lr_schedule="burda2016",
        binarize="dynamic",
        num_is_samples=5000,
    ),
}
