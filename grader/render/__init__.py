"""Renderers of the results model. Every renderer has one signature: `render(report: Report) -> str`."""
