"""Item storage and exports."""
