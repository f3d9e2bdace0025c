"""Diffusion prior of MindEye V1, written from the key/shape description in ``docs/v1_checkpoints.md``: the
257x768 "VersatileDiffusionPriorNetwork" (``PriorNetwork``) and the final-layer 1x768 prior's dalle2
``DiffusionPriorNetwork`` (``Dalle2PriorNetwork``, ``PriorConfig.v1_final()``).

``DiffusionPrior(...).state_dict()`` at V1 sizes has exactly the key order and shapes of the released
``prior_257_final_subj01_bimixco_softclip_byol`` checkpoint: 13 ``noise_scheduler.*`` buffers, then ``net.*``,
then ``voxel2clip.*`` (guaranteed by registration order).

Network behaviour (matching the dalle2-style transformer the checkpoint was trained with, as far as known):
pre-norm blocks with gain-only LayerNorms, cosine-similarity attention (scale 16) with one shared key/value head
and a learned null key/value, rotary embeddings on the first 32 feature dims of q/k, a T5-style relative
position bias, SwiGLU feed-forward, a "stable" final LayerNorm and a bias-free output projection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .voxel2clip import BrainNetwork


@dataclass
class PriorConfig:
    dim: int = 768
    depth: int = 6
    heads: int = 12
    dim_head: int = 64
    num_tokens: int = 257
    timesteps: int = 100
    cond_drop_prob: float = 0.2
    ff_mult: int = 4
    rotary_dim: int = 32  # rotary features per head (min(32, dim_head) in V1)
    rel_pos_buckets: int = 32
    rel_pos_max_distance: int = 128
    cosine_sim_scale: float = 16.0
    # dalle2 scales image embeds by this factor before noising (its default is sqrt(dim)); None -> sqrt(dim).
    # UNCERTAIN whether V1 training used the dalle2 default; set 1.0 to disable.
    image_embed_scale: float | None = None
    # Ours, off in V1: add ``learned_query`` (the positional embedding of the noisy image tokens) to the brain tokens
    # too, so attention can pair image token i with brain token i by position. Adds no parameters.
    brain_pos_emb: bool = False
    # "versatile": V1's 257-token network (PriorNetwork); "dalle2": dalle2-pytorch's DiffusionPriorNetwork, which
    # V1's final-layer (1 x 768) prior used (Dalle2PriorNetwork: causal, normformer, a learned time embedding table)
    network: str = "versatile"
    max_text_len: int = 256  # dalle2 only: null text-encoding tokens that lead its sequence
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0

    @classmethod
    def v1_final(cls, **overrides) -> "PriorConfig":
        """The released 1 x 768 prior's network: dalle2 DiffusionPriorNetwork(dim 768, depth 12, heads 12, dim_head
        64, ff_mult 4, 1000 timesteps, normformer, rotary, final_proj, norm_out, dropouts 0.05)."""
        return cls(**{**dict(dim=768, depth=12, heads=12, dim_head=64, num_tokens=1, timesteps=1000, network="dalle2",
                             attn_dropout=0.05, ff_dropout=0.05), **overrides})


# ----------------------------------------------------------------------------------------------- building blocks
class GainLayerNorm(nn.Module):
    """LayerNorm over the last dim with a learned gain ``g`` and no bias. ``stable`` divides by the row max first."""

    def __init__(self, dim: int, stable: bool = False, eps: float = 1e-5):
        super().__init__()
        self.g = nn.Parameter(torch.ones(dim))
        self.stable, self.eps = stable, eps

    def forward(self, x):
        if self.stable:
            x = x / x.amax(dim=-1, keepdim=True).detach()
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
        return (x - mean) * (var + self.eps).rsqrt() * self.g


class SinusoidalEmbedding(nn.Module):
    """Continuous timestep t ``[B]`` -> ``[B, dim]`` (sin | cos)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        args = t.float()[:, None] * freqs[None]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class TimeMLP(nn.Module):
    """``net.0.0`` Linear+SiLU, ``net.1.0`` Linear+SiLU, ``net.2`` Linear (hidden = 2*dim)."""

    def __init__(self, dim: int, out_dim: int, expansion: int = 2):
        super().__init__()
        h = dim * expansion
        self.net = nn.Sequential(
            nn.Sequential(nn.Linear(dim, h), nn.SiLU()),
            nn.Sequential(nn.Linear(h, h), nn.SiLU()),
            nn.Linear(h, out_dim),
        )

    def forward(self, x):
        return self.net(x)


class RotaryEmbedding(nn.Module):
    """Interleaved rotary embedding on the first ``2*len(freqs)`` features. ``freqs`` is a frozen Parameter
    (that is how the checkpoint stores it); one instance is shared by every attention layer."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def rotate(self, x):  # x [..., n, d]
        n, rot = x.shape[-2], self.freqs.numel() * 2
        angles = torch.arange(n, device=x.device, dtype=self.freqs.dtype)[:, None] * self.freqs[None]
        angles = angles.repeat_interleave(2, dim=-1).to(x.dtype)  # [n, rot], pairs (f0,f0,f1,f1,...)
        xr, rest = x[..., :rot], x[..., rot:]
        x1, x2 = xr.unflatten(-1, (-1, 2)).unbind(-1)
        rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
        return torch.cat((xr * angles.cos() + rotated * angles.sin(), rest), dim=-1)


class RelativePositionBias(nn.Module):
    """T5-style bucketed bias ``[heads, i, j]``. Like the original prior, buckets look only backwards
    (keys after the query share bucket 0)."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def bucket(self, rel):
        n = (-rel).clamp(min=0)
        exact = self.num_buckets // 2
        large = exact + (
            torch.log(n.float().clamp(min=1) / exact) / math.log(self.max_distance / exact) * (self.num_buckets - exact)
        ).long()
        return torch.where(n < exact, n, large.clamp(max=self.num_buckets - 1))

    def forward(self, i: int, j: int, device=None):
        rel = torch.arange(j, device=device)[None, :] - torch.arange(i, device=device)[:, None]
        return self.relative_attention_bias(self.bucket(rel)).permute(2, 0, 1)


class Attention(nn.Module):
    """Pre-norm multi-query attention: ``heads`` query heads, one shared k/v head of ``dim_head``, a learned null
    key/value prepended, cosine-similarity logits scaled by ``cosine_sim_scale``. Non-causal."""

    def __init__(self, dim, heads, dim_head, rotary: RotaryEmbedding | None, cosine_sim_scale=16.0, causal=False,
                 dropout=0.0):
        super().__init__()
        self.heads, self.scale, self.causal = heads, cosine_sim_scale, causal
        self.dropout = nn.Dropout(dropout)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.norm = GainLayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.rotary_emb = rotary
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False), GainLayerNorm(dim))

    def forward(self, x, attn_bias=None):
        b = x.shape[0]
        x = self.norm(x)
        q = self.to_q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [b, h, n, d]
        k, v = self.to_kv(x).chunk(2, dim=-1)  # [b, n, d] each
        if self.rotary_emb is not None:
            q, k = self.rotary_emb.rotate(q), self.rotary_emb.rotate(k)
        nk, nv = (t.expand(b, 1, -1) for t in self.null_kv.unbind(0))
        k, v = torch.cat((nk, k), dim=1), torch.cat((nv, v), dim=1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        sim = torch.einsum("bhid,bjd->bhij", q, k) * self.scale
        if attn_bias is not None:
            sim = sim + attn_bias
        if self.causal:  # query i sees the null key and tokens 0..i
            i, j = sim.shape[-2:]
            sim = sim.masked_fill(torch.ones(i, j, dtype=torch.bool, device=sim.device).triu(j - i + 1),
                                  -torch.finfo(sim.dtype).max)
        attn = self.dropout(sim.softmax(dim=-1, dtype=torch.float32).to(q.dtype))
        out = torch.einsum("bhij,bjd->bhid", attn, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class SwiGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return x * F.silu(gate)


def feed_forward(dim: int, mult: int = 4, dropout: float = 0.0, post_activation_norm: bool = False) -> nn.Sequential:
    """Indices 0 norm, 1 Linear(dim, 2*mult*dim), 2 SwiGLU, 3 Identity (or, normformer, a LayerNorm of the
    activations), 4 Dropout, 5 Linear(mult*dim, dim)."""
    inner = dim * mult
    return nn.Sequential(
        GainLayerNorm(dim), nn.Linear(dim, inner * 2, bias=False), SwiGLU(),
        GainLayerNorm(inner) if post_activation_norm else nn.Identity(),
        nn.Dropout(dropout), nn.Linear(inner, dim, bias=False),
    )


class Transformer(nn.Module):
    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.rel_pos_bias = RelativePositionBias(cfg.heads, cfg.rel_pos_buckets, cfg.rel_pos_max_distance)
        rotary = RotaryEmbedding(min(cfg.rotary_dim, cfg.dim_head))  # shared by all layers
        dalle2 = cfg.network == "dalle2"  # causal, with normformer's extra norm in the feed-forward
        self.layers = nn.ModuleList(
            nn.ModuleList([
                Attention(cfg.dim, cfg.heads, cfg.dim_head, rotary, cfg.cosine_sim_scale, causal=dalle2,
                          dropout=cfg.attn_dropout),
                feed_forward(cfg.dim, cfg.ff_mult, cfg.ff_dropout, post_activation_norm=dalle2),
            ])
            for _ in range(cfg.depth)
        )
        self.norm = GainLayerNorm(cfg.dim, stable=True)
        self.project_out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x):
        n = x.shape[1]
        bias = self.rel_pos_bias(n, n + 1, device=x.device)  # +1 for the null key
        for attn, ff in self.layers:
            x = attn(x, attn_bias=bias) + x
            x = ff(x) + x
        return self.project_out(self.norm(x))


# ------------------------------------------------------------------------------------------------- prior network
class PriorNetwork(nn.Module):
    """Denoiser: (noisy image tokens, timesteps, brain tokens) -> predicted clean image tokens.

    Sequence layout (V1 ``learned_query_mode="pos_emb"``): ``[brain (N), time (1), noisy image + learned_query (N)]``;
    i.e. ``learned_query`` acts as a positional embedding added to the noisy image tokens instead of being appended
    as N extra query tokens. The output is the last N positions after the transformer. This is our reading of the
    original; attention is non-causal (V1 ``causal=False``).
    """

    def __init__(self, config: PriorConfig | None = None):
        super().__init__()
        cfg = self.config = config or PriorConfig()
        n, d = cfg.num_tokens, cfg.dim
        self.learned_query = nn.Parameter(torch.randn(n, d))
        self.null_brain_embeds = nn.Parameter(torch.randn(n, d))
        self.null_image_embed = nn.Parameter(torch.randn(n, d))
        self.to_time_embeds = nn.Sequential(nn.Sequential(SinusoidalEmbedding(d), TimeMLP(d, d)))
        self.causal_transformer = Transformer(cfg)  # name kept for checkpoint compatibility; it is not causal

    def forward(self, image_embed, timesteps, brain_embed, brain_cond_drop_prob=0.0, image_cond_drop_prob=0.0,
                generator=None):
        """image_embed ``[B, N, D]`` (noisy), timesteps ``[B]``, brain_embed ``[B, N, D]`` -> ``[B, N, D]``.

        ``*_cond_drop_prob`` replace each sample's brain / image tokens by the learned null embeddings with that
        probability (1.0 = unconditional, used for classifier-free guidance)."""
        b = image_embed.shape[0]

        def keep(p):
            if p <= 0:
                return torch.ones(b, 1, 1, dtype=torch.bool, device=image_embed.device)
            if p >= 1:
                return torch.zeros(b, 1, 1, dtype=torch.bool, device=image_embed.device)
            r = torch.rand(b, generator=generator, device=image_embed.device if generator is None else generator.device)
            return (r.to(image_embed.device) >= p).view(b, 1, 1)

        brain_embed = torch.where(keep(brain_cond_drop_prob), brain_embed, self.null_brain_embeds.to(brain_embed.dtype))
        image_embed = torch.where(keep(image_cond_drop_prob), image_embed, self.null_image_embed.to(image_embed.dtype))
        time = self.to_time_embeds(timesteps).unsqueeze(1).to(image_embed.dtype)  # [B, 1, D]
        image_embed = image_embed + self.learned_query.to(image_embed.dtype)
        if self.config.brain_pos_emb:
            brain_embed = brain_embed + self.learned_query.to(brain_embed.dtype)
        tokens = torch.cat((brain_embed, time, image_embed), dim=1)
        return self.causal_transformer(tokens)[:, -self.config.num_tokens:]


class _AddTokenAxis(nn.Module):
    """``[B, D]`` -> ``[B, 1, D]`` (dalle2's ``Rearrange('b (n d) -> b n d', n=1)``; no parameters)."""

    def forward(self, x):
        return x.unsqueeze(1)


class Dalle2PriorNetwork(nn.Module):
    """dalle2-pytorch's ``DiffusionPriorNetwork`` as V1's final-layer prior configured it (one image, text and
    time embedding each, no text encodings), written from its state-dict layout and published behaviour.

    Sequence: ``[null text encodings (max_text_len), brain (1), time (1), noisy image (1), learned query (1)]``
    through a causal transformer; the learned query's output is the predicted clean image embedding. The brain
    embedding fills dalle2's "text embedding" slot (``BrainDiffusionPriorOld``). Conditioning dropout swaps in
    ``null_text_embeds`` (brain) and ``null_image_embed``. Keys, order and shapes match the released
    ``prior_1x768_final_subj01_bimixco_softclip_byol`` checkpoint's ``net.*``."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        cfg = self.config = config
        d = cfg.dim
        if cfg.num_tokens != 1:
            raise ValueError(f"the dalle2 prior network predicts one embedding, not {cfg.num_tokens} tokens")
        # registration order is the checkpoint's: own parameters first, then to_time_embeds, causal_transformer
        self.learned_query = nn.Parameter(torch.randn(d))
        self.null_text_encodings = nn.Parameter(torch.randn(1, cfg.max_text_len, d))
        self.null_text_embeds = nn.Parameter(torch.randn(1, 1, d))
        self.null_image_embed = nn.Parameter(torch.randn(1, d))
        self.to_time_embeds = nn.Sequential(nn.Embedding(cfg.timesteps, d), _AddTokenAxis())
        self.causal_transformer = Transformer(cfg)

    def forward(self, image_embed, timesteps, brain_embed, brain_cond_drop_prob=0.0, image_cond_drop_prob=0.0,
                generator=None):
        """image_embed ``[B, 1, D]`` or ``[B, D]`` (noisy), timesteps ``[B]`` (integers), brain_embed alike ->
        the predicted clean embedding, in the input's shape."""
        squeeze = image_embed.ndim == 2
        image_embed = image_embed.reshape(len(image_embed), 1, -1)
        brain_embed = brain_embed.reshape(len(brain_embed), 1, -1)
        b, dev, dtype = image_embed.shape[0], image_embed.device, image_embed.dtype

        def keep(p):
            if p <= 0:
                return torch.ones(b, 1, 1, dtype=torch.bool, device=dev)
            if p >= 1:
                return torch.zeros(b, 1, 1, dtype=torch.bool, device=dev)
            r = torch.rand(b, generator=generator, device=dev if generator is None else generator.device)
            return (r.to(dev) >= p).view(b, 1, 1)

        brain_embed = torch.where(keep(brain_cond_drop_prob), brain_embed, self.null_text_embeds.to(dtype))
        image_embed = torch.where(keep(image_cond_drop_prob), image_embed, self.null_image_embed.to(dtype)[:, None])
        time = self.to_time_embeds(timesteps.long()).to(dtype)
        tokens = torch.cat((self.null_text_encodings.to(dtype).expand(b, -1, -1), brain_embed, time, image_embed,
                            self.learned_query.to(dtype).expand(b, 1, -1)), dim=1)
        pred = self.causal_transformer(tokens)[:, -1:]
        return pred[:, 0] if squeeze else pred


# ------------------------------------------------------------------------------------------------- noise schedule
_SCHEDULE_NAMES = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "p2_loss_weight",
)


class NoiseSchedule(nn.Module):
    """Cosine DDPM schedule (s=0.008, betas clipped to 0.999) as 13 persistent float32 buffers of length T."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = timesteps
        s = 0.008
        x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
        f = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
        f = f / f[0]
        betas = (1 - f[1:] / f[:-1]).clamp(0, 0.999)
        ac = torch.cumprod(1 - betas, dim=0)
        ac_prev = F.pad(ac[:-1], (1, 0), value=1.0)
        post_var = betas * (1 - ac_prev) / (1 - ac)
        values = dict(
            betas=betas, alphas_cumprod=ac, alphas_cumprod_prev=ac_prev, sqrt_alphas_cumprod=ac.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - ac).sqrt(), log_one_minus_alphas_cumprod=torch.log(1 - ac),
            sqrt_recip_alphas_cumprod=(1 / ac).sqrt(), sqrt_recipm1_alphas_cumprod=(1 / ac - 1).sqrt(),
            posterior_variance=post_var, posterior_log_variance_clipped=torch.log(post_var.clamp(min=1e-20)),
            posterior_mean_coef1=betas * ac_prev.sqrt() / (1 - ac),
            posterior_mean_coef2=(1 - ac_prev) * (1 - betas).sqrt() / (1 - ac),
            p2_loss_weight=torch.ones_like(betas),
        )
        for name in _SCHEDULE_NAMES:
            self.register_buffer(name, values[name].float())


def _bcast(v, t):
    return v[t].view(-1, 1, 1)


class DiffusionPrior(nn.Module):
    """Brain-conditioned diffusion prior: ``noise_scheduler`` buffers, denoiser ``net`` and ``voxel2clip`` backbone.

    ``loss`` and ``sample`` work on brain tokens (``voxel2clip`` output) and CLIP image tokens, both ``[B, N, D]``.
    The network predicts x0 directly (V1 ``predict_x_start=True``).
    """

    def __init__(self, config: PriorConfig | None = None, voxel2clip: BrainNetwork | None = None):
        super().__init__()
        self.config = config or PriorConfig()
        # registration order fixes state_dict order: noise_scheduler.*, net.*, voxel2clip.*
        self.noise_scheduler = NoiseSchedule(self.config.timesteps)
        if self.config.network not in ("versatile", "dalle2"):
            raise ValueError(f"unknown prior network {self.config.network!r}; expected 'versatile' or 'dalle2'")
        self.net = Dalle2PriorNetwork(self.config) if self.config.network == "dalle2" else PriorNetwork(self.config)
        self.voxel2clip = voxel2clip
        self.embed_scale = (
            self.config.dim ** 0.5 if self.config.image_embed_scale is None else self.config.image_embed_scale
        )

    def forward(self, voxels, image_embeds=None, rows=slice(None)):
        """Training forward through the whole model (so a DDP wrapper sees one call): voxels -> ``(backbone,
        projected)`` brain tokens and, given CLIP ``image_embeds``, the prior's loss on ``rows`` of the batch."""
        backbone, proj = self.voxel2clip(voxels)
        if image_embeds is None:
            return backbone, proj
        b = backbone[rows]
        loss = self.loss(b, image_embeds[rows]) if len(b) else backbone.sum() * 0.0
        return backbone, proj, loss

    def loss(self, brain_embeds, image_embeds, generator=None):
        """MSE between the predicted and true (scaled) clean image tokens at a random timestep, with conditioning
        dropout (``cond_drop_prob``) on both brain tokens and noisy image tokens. Returns a scalar."""
        sched, b = self.noise_scheduler, image_embeds.shape[0]
        dev = image_embeds.device
        gdev = generator.device if generator is not None else dev
        t = torch.randint(0, sched.timesteps, (b,), generator=generator, device=gdev).to(dev)
        x0 = image_embeds * self.embed_scale
        noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype).to(dev)
        xt = _bcast(sched.sqrt_alphas_cumprod, t) * x0 + _bcast(sched.sqrt_one_minus_alphas_cumprod, t) * noise
        p = self.config.cond_drop_prob
        pred = self.net(xt, t, brain_embeds, brain_cond_drop_prob=p, image_cond_drop_prob=p, generator=generator)
        per_sample = F.mse_loss(pred, x0, reduction="none").mean(dim=(1, 2))
        return (per_sample * sched.p2_loss_weight[t]).mean()

    def _predict_x0(self, x, t, brain_embeds, guidance_scale):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        cond = self.net(x, tt, brain_embeds)
        if guidance_scale == 1.0:
            return cond
        uncond = self.net(x, tt, brain_embeds, brain_cond_drop_prob=1.0)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def posterior_mean(self, brain_embeds, guidance_scale=1.0, generator=None):
        """The prior's x0 prediction from pure noise at the last timestep: trained with MSE, it estimates the mean
        of its posterior over clean tokens given the brain tokens (the one deterministic answer it gives; with
        guidance > 1 an extrapolation of it). Returns ``[B, N, D]`` in the original CLIP scale."""
        x = self._noise(brain_embeds, generator)
        return self._predict_x0(x, self.noise_scheduler.timesteps - 1, brain_embeds, guidance_scale) / self.embed_scale

    def _noise(self, brain_embeds, generator):
        """Standard normal image tokens ``[B, N, D]`` on the brain tokens' device and dtype, drawn on the
        generator's device (so a seed gives the same draw wherever the model runs)."""
        dev, dtype = brain_embeds.device, brain_embeds.dtype
        gdev = generator.device if generator is not None else dev
        shape = (brain_embeds.shape[0], self.config.num_tokens, self.config.dim)
        return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(dev)

    @torch.no_grad()
    def sample(self, brain_embeds, steps=None, guidance_scale=1.0, generator=None):
        """DDPM ancestral sampling with x0 prediction. ``steps`` < T uses evenly strided timesteps (the posterior is
        recomputed for each stride, so ``steps=T`` is the standard DDPM chain). Returns ``[B, N, D]`` image tokens
        in the original (unscaled) CLIP scale."""
        sched = self.noise_scheduler
        T = sched.timesteps
        steps = T if steps is None else max(1, min(int(steps), T))
        x = self._noise(brain_embeds, generator)
        ts = torch.linspace(T - 1, 0, steps).round().long().tolist()
        ac = sched.alphas_cumprod
        for i, t in enumerate(ts):
            x0 = self._predict_x0(x, t, brain_embeds, guidance_scale)
            if i == len(ts) - 1:
                x = x0
                break
            t_prev = ts[i + 1]
            a_t, a_prev = ac[t], ac[t_prev]
            beta = 1 - a_t / a_prev
            mean = (beta * a_prev.sqrt() / (1 - a_t)) * x0 + ((1 - a_prev) * (1 - beta).sqrt() / (1 - a_t)) * x
            var = beta * (1 - a_prev) / (1 - a_t)
            x = mean + var.clamp(min=1e-20).sqrt() * self._noise(brain_embeds, generator)
        return x / self.embed_scale
