"""align3d_rt.render: view presets, the Open3D default camera and the z-buffer renderers.

Importing this package loads neither open3d nor torch (nor numba: the renderers load on first use).
"""
from align3d_rt.render.api import render_views
from align3d_rt.render.types import RenderResult
from align3d_rt.render.views import VIEW_PRESETS, RenderSettings, settings_for

__all__ = ["RenderResult", "RenderSettings", "VIEW_PRESETS", "render_views", "settings_for"]
