"""What a snapshot collects. Each capture returns artifacts; none writes the catalog."""
