"""The plugin's dialogs, built in code: the GeoLink dialog, settings, backend installer and model manager."""
