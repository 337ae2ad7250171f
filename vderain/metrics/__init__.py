"""Quality, temporal-consistency and speed metrics for deraining on uint8 RGB sequences."""
