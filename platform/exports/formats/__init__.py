"""One module per family of export formats; `exports.exporters` keeps the registry."""
