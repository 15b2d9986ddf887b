"""Result pages: one self-contained HTML file per scored part (3D cloud with three.js, decision,
regions, views) and an index page over a folder's parts. They work offline from file://."""
from align3d_rt.eval.page.index import write_index_page
from align3d_rt.eval.page.part import MAX_DRAW_POINTS, write_part_page
from align3d_rt.eval.page.views import overlay_views

__all__ = ["MAX_DRAW_POINTS", "overlay_views", "write_index_page", "write_part_page"]
