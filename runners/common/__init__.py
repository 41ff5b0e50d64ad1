"""Math and helpers shared by several stages (no stage logic here)."""
