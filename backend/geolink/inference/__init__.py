"""Running a model over a raster: the job (model, raster, windows, OSM graphs), the engine that streams windows
through the model, the sinks that write its outputs, and the zones cut from a class map.

The raster side (windows, reading, writing, styles) is in ../raster; the tasks in ../tasks put them together.
"""
