"""The GeoLink model: a timm ViT, the OSM graph encoder, the fusion block and the pretraining parts.

Parameter names are the original's, so an official checkpoint maps onto this module one to one
(see checkpoint.py). Differences from the original, all at inference-neutral places:
- every OSM node is used (the original keeps 50 per image at random), so outputs are deterministic;
- the OSM LayerNorm statistics and the relation averaging are per graph, so an image's output does
  not depend on the rest of its batch (config.osm_norm = "batch" restores the original's batch-wide
  statistics, which the reference outputs were computed with; for a batch of one both agree);
- an image without OSM nodes takes the image-only pathway (fusion.py), never NaN;
- batched tensors throughout (no per-graph loops, no numpy), scaled-dot-product attention.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
import torch_geometric
from timm.models.vision_transformer import Block
from torch import nn

from ..errors import InputError, ModelError
from .card import ModelCard
from .config import GeoLinkConfig, default_layers
from .derived import DerivedCache
from .fusion import TwoWayAttentionBlock
from .graphs import NODE_TYPES, GraphBatch, collate_graphs
from .osm_encoder import OSMHeteroGAT, graph_layer_norm
from .pos_embed import grid_points, sincos_2d, sincos_table

PATCH = 16


def _fixed(table: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(table, requires_grad=False)


class GeoLinkModel(nn.Module):
    """GeoLink. `encode(images, graphs, layers)` gives the downstream feature maps.

    `max_fusion_nodes` (default None: every node) caps the OSM nodes of each image that enter the fusion
    block (see collate_graphs): its attention costs time quadratic in them, and dense city tiles hold
    thousands, where the original was trained with at most 50.
    """

    def __init__(self, config: GeoLinkConfig, card: Optional[ModelCard] = None):
        super().__init__()
        self.config = config
        c = config
        vit = timm.create_model(c.arch, pretrained=False, num_classes=0, global_pool="", img_size=c.img_size,
                                in_chans=c.in_chans, **c.vit_overrides)
        if tuple(vit.patch_embed.patch_size) != (PATCH, PATCH):
            raise ModelError(f"{c.arch} has {vit.patch_embed.patch_size} patches; GeoLink needs 16 x 16.")
        vit.patch_embed.strict_img_size = False
        vit.pos_embed.requires_grad_(False)
        self.img_encoder = vit
        self.patch_embed = vit.patch_embed  # the original's alias (its keys appear twice in checkpoints)
        dim = vit.embed_dim
        self.embed_dim, self.depth, self.grid = dim, len(vit.blocks), c.img_size // PATCH
        self.max_fusion_nodes: Optional[int] = None
        self.layers = list(c.layers) if c.layers else default_layers(self.depth)
        self.card = card if card is not None else ModelCard.for_model(self)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.img_pos_embed = _fixed(sincos_table(dim, self.grid))
        self._derived = DerivedCache()
        if c.osm or c.pretraining:
            self.img_norm = nn.LayerNorm(dim)
        if c.osm:
            self.osm_encoder = OSMHeteroGAT(c.text_dim, c.osm_dim)
            self.osm_norm = nn.ModuleDict({t: torch_geometric.nn.LayerNorm(c.osm_dim) for t in NODE_TYPES})
            self.fusion_img_pos_embed = _fixed(sincos_table(c.fusion_dim, self.grid))
            self.img_fusion_mlp = nn.Linear(dim, c.fusion_dim)
            self.osm_node_fusion_mlp = nn.ModuleDict({t: nn.Linear(c.osm_dim, c.fusion_dim) for t in NODE_TYPES})
            self.osm_cross_modal_encoder = nn.ModuleList(
                [TwoWayAttentionBlock(c.fusion_dim, c.fusion_heads, dropout=0.1) for _ in range(c.fusion_depth)])
        if c.pretraining:
            self._build_pretraining(c, dim)
        self._init_weights()

    def _build_pretraining(self, c: GeoLinkConfig, dim: int) -> None:
        self.rec_img_pos_embed = _fixed(sincos_table(c.decoder_dim, self.grid))
        self.img_decoder_mlp = nn.Linear(dim, c.decoder_dim)
        self.img_mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        self.img_cross_modal_decoder = nn.ModuleList(
            [Block(c.decoder_dim, c.decoder_heads, 4.0, qkv_bias=True) for _ in range(c.decoder_depth)])
        self.img_decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.img_decoder_pred = nn.Linear(c.decoder_dim, PATCH * PATCH * c.in_chans)
        if c.osm:
            self.osm_read_out = nn.ModuleDict({t: torch_geometric.nn.Set2Set(c.osm_dim, processing_steps=5)
                                               for t in NODE_TYPES})
            self.osm_aggr_mlp = nn.ModuleDict({t: nn.Linear(2 * c.osm_dim, c.graph_dim) for t in NODE_TYPES})
            self.type_attention = nn.Linear(c.graph_dim, 1)
            self.osm_graph_consistency_prj = nn.Linear(c.graph_dim, c.contrast_dim)
            self.img_consistency_prj = nn.Linear(dim, c.contrast_dim)
            self.osm_mask_token = nn.ParameterDict({t: nn.Parameter(torch.zeros(1, c.text_dim))
                                                    for t in ("line", "point", "polygon")})
            self.osm_node_pred = nn.Linear(c.fusion_dim, c.text_dim)

    def _init_weights(self) -> None:
        """The original's initialisation: xavier linears outside the ViT, N(0, 0.02) tokens."""
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for name, module in self.named_children():
            if name in ("img_encoder", "patch_embed"):
                continue
            for m in module.modules() if isinstance(module, nn.Module) else ():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        if self.config.pretraining:
            nn.init.normal_(self.img_mask_token, std=0.02)
            for p in getattr(self, "osm_mask_token", {}).values():
                nn.init.normal_(p, std=0.02)

    # ------------------------------------------------------------------ properties
    @property
    def text_dim(self) -> int:
        return self.config.text_dim

    @property
    def has_osm(self) -> bool:
        return self.config.osm

    @property
    def has_pretraining_parts(self) -> bool:
        return self.config.pretraining

    def out_channels(self, layers: Optional[Sequence[int]] = None) -> List[int]:
        """Channels of each map encode() returns for `layers`."""
        n = len(self._check_layers(layers))
        return [self.embed_dim] * (n - 1) + [self.config.fusion_dim if self.has_osm else self.embed_dim]

    # ------------------------------------------------------------------ shared pieces
    def _check_layers(self, layers: Optional[Sequence[int]]) -> List[int]:
        layers = sorted(int(i) for i in (layers if layers is not None else self.layers))
        if not layers or layers[0] < 0 or layers[-1] >= self.depth:
            raise InputError(f"Output layers {layers} must be block indices between 0 and {self.depth - 1}.")
        return layers

    def _pos(self, table: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """[1, rows*cols, C] patch position embeddings for a rows x cols grid (the stored table at the native
        size; other sizes are evaluated once per size, device and dtype while gradients are off)."""
        if rows == cols == self.grid:
            return table[:, 1:]

        def evaluate():
            pts = grid_points(rows, cols, self.grid, table.device)
            return sincos_2d(table.shape[-1], pts).to(table.dtype)[None]

        return self._derived.get(("pos", table.shape[-1], rows, cols, table.device, table.dtype), (), evaluate)

    def _patch_tokens(self, images: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        if images.dim() != 4 or images.shape[1] != self.config.in_chans:
            raise InputError(f"Images must be [B, {self.config.in_chans}, H, W]; got {list(images.shape)}.")
        rows, cols = images.shape[2] // PATCH, images.shape[3] // PATCH
        if images.shape[2] % PATCH or images.shape[3] % PATCH:
            raise InputError(f"Image size {tuple(images.shape[2:])} is not a multiple of the patch size {PATCH}.")
        x = self.patch_embed(images) + self._pos(self.img_pos_embed, rows, cols)
        return x, rows, cols

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.img_pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], 1)

    def _graph_batch(self, graphs, batch_size: int, device) -> Optional[GraphBatch]:
        if graphs is None or not self.has_osm:
            return None
        if not isinstance(graphs, GraphBatch) and len(graphs) != batch_size:
            raise InputError(f"Got {len(graphs)} graphs for {batch_size} images; give one per image (or None).")
        gb = collate_graphs(graphs, self.text_dim, self.max_fusion_nodes)
        if gb.num_graphs != batch_size:
            raise InputError(f"The graph batch holds {gb.num_graphs} graphs for {batch_size} images.")
        if not gb.num_nodes:
            return None
        return gb if gb.node_type.device == torch.device(device) else gb.to(device)

    def _node_embeddings(self, gb: GraphBatch, x: Dict[str, torch.Tensor], affine: bool = True) -> torch.Tensor:
        """Normalised GAT embeddings [N, osm_dim] in the batch's flat order (rows of unreached nodes:
        out of every statistic, meaningless); `affine=False` leaves out the per-type affine map."""
        h = self.osm_encoder(gb, x)
        per_graph = self.config.osm_norm == "graph"
        groups = gb.num_graphs if per_graph else 1
        group = gb.node_type * groups + (gb.node_graph if per_graph else 0)
        group = torch.where(gb.reached, group, torch.full_like(group, len(NODE_TYPES) * groups))
        h = graph_layer_norm(h, group, len(NODE_TYPES) * groups + 1, self.osm_norm[NODE_TYPES[0]].eps)
        if not affine:
            return h
        weight = torch.stack([self.osm_norm[t].weight for t in NODE_TYPES])
        bias = torch.stack([self.osm_norm[t].bias for t in NODE_TYPES])
        return h * weight[gb.node_type] + bias[gb.node_type]

    def _node_tokens(self, gb: GraphBatch) -> torch.Tensor:
        """The fusion block's node tokens [M, fusion_dim] (reached nodes, flat order): osm_node_fusion_mlp
        of the normalised embeddings, with the LayerNorm's per-type affine map folded into its weights."""
        def fold():
            out = []
            for t in NODE_TYPES:
                norm, mlp = self.osm_norm[t], self.osm_node_fusion_mlp[t]
                out.append((mlp.weight * norm.weight, mlp.weight @ norm.bias + mlp.bias))
            return out

        params = list(self.osm_norm.parameters()) + list(self.osm_node_fusion_mlp.parameters())
        h = gb.split(self._node_embeddings(gb, gb.x, affine=False))
        folded = self._derived.get("tokens", params, fold)
        tokens = torch.cat([F.linear(h[t], w, b) for t, (w, b) in zip(NODE_TYPES, folded)])
        return tokens if gb.fusion_nodes.shape[0] == gb.num_nodes else tokens[gb.fusion_nodes]

    def _node_pos(self, pos: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A node's fusion position embedding: the mean over its position points [N, K, 2] (tile units x
        grid), or their weighted sum (zero-padded points, weight [N, K])."""
        emb = sincos_2d(self.config.fusion_dim, pos * self.grid, torch.float32)
        if weight is None:
            return emb.mean(1).to(pos.dtype)
        return torch.bmm(weight[:, None].to(emb.dtype), emb)[:, 0].to(pos.dtype)

    # ------------------------------------------------------------------ inference
    def fuse(self, patches: torch.Tensor, graphs, rows: int, cols: int) -> torch.Tensor:
        """Patches [B, L, D] (a raw block output) + OSM graphs -> fused patches [B, L, fusion_dim]."""
        b = patches.shape[0]
        patches = self.img_norm(patches)
        gb = self._graph_batch(graphs, b, patches.device)
        if gb is None or not gb.padding.num_nodes:  # the image-only pathway
            queries = self.img_fusion_mlp(patches)
            for blk in self.osm_cross_modal_encoder:
                queries, _ = blk(queries, None, None, None, None)
            return queries
        nodes = self._node_tokens(gb)
        node_pe = self._node_pos(gb.fusion_pos, gb.fusion_pos_weight)
        query_pe = self._pos(self.fusion_img_pos_embed, rows, cols)
        queries, patch_q = self._fusion_queries(patches, rows, cols)
        last = len(self.osm_cross_modal_encoder) - 1
        for i, blk in enumerate(self.osm_cross_modal_encoder):
            queries, nodes = blk(queries, query_pe, nodes, node_pe, gb.padding, update_nodes=i < last,
                                 patch_q=patch_q if i == 0 else None)
        return queries

    def _fusion_queries(self, patches: torch.Tensor, rows: int, cols: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the fusion block's patch tokens, the first block's patch-to-node attention queries) in one
        matmul: q = (x M' + m + pe) Wq' + bq = x (Wq M)' + (Wq m + bq) + pe Wq'."""
        mlp, att = self.img_fusion_mlp, self.osm_cross_modal_encoder[0].cross_attn_token_to_image
        d = mlp.out_features

        def fold():
            wq, bq = att.in_proj_weight[:d], att.in_proj_bias[:d]
            return torch.cat([mlp.weight, wq @ mlp.weight]), torch.cat([mlp.bias, wq @ mlp.bias + bq])

        def pe_q():
            return self._pos(self.fusion_img_pos_embed, rows, cols) @ att.in_proj_weight[:d].t()

        weight, bias = self._derived.get("queries", (mlp.weight, mlp.bias, att.in_proj_weight, att.in_proj_bias), fold)
        pe = self._derived.get(("pe_q", rows, cols), (att.in_proj_weight, self.fusion_img_pos_embed), pe_q)
        y = F.linear(patches, weight, bias)
        q = y[..., d:]
        q += pe  # in place: one pass fewer over the patches
        return y[..., :d], q

    def encode(self, images: torch.Tensor, graphs=None, layers: Optional[Sequence[int]] = None) -> List[torch.Tensor]:
        """Feature maps [B, C, H/16, W/16]: the raw ViT block outputs at `layers` (default self.layers),
        the last one replaced by the RS+OSM fused map (C = fusion_dim) on a multimodal model.

        graphs: one HeteroData (original GeoLink format) or None per image, or None for all; an image
        without OSM nodes gets the image-only pathway of the fusion block.
        """
        layers = self._check_layers(layers)
        x, rows, cols = self._patch_tokens(images)
        x = self._with_cls(x)
        feats = []
        for i, blk in enumerate(self.img_encoder.blocks[: layers[-1] + 1]):
            x = blk(x)
            feats += [x[:, 1:]] * layers.count(i)
        if self.has_osm:
            feats[-1] = self.fuse(feats[-1], graphs, rows, cols)
        b = images.shape[0]
        return [f.transpose(1, 2).reshape(b, -1, rows, cols) for f in feats]

    def forward(self, images: torch.Tensor, graphs=None) -> List[torch.Tensor]:
        return self.encode(images, graphs)

    # ------------------------------------------------------------------ pretraining
    def pretrain_losses(self, images: torch.Tensor, graphs=None, mask_ratio: float = 0.75,
                        osm_mask_ratio: float = 0.2) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masked-image reconstruction, image-graph contrastive, masked-node reconstruction) losses
        (objectives.py)."""
        from .objectives import pretrain_losses

        return pretrain_losses(self, images, graphs, mask_ratio, osm_mask_ratio)


def create_geolink(arch: str = "vit_large_patch16_224", text_dim: int = 512, img_size: int = 224,
                   **options) -> GeoLinkModel:
    """A freshly initialised GeoLink (see GeoLinkConfig for the options)."""
    return GeoLinkModel(GeoLinkConfig(arch=arch, text_dim=text_dim, img_size=img_size, **options))
