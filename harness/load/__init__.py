"""Load shaping: stepped and swept stages, open-loop arrivals, and distributed runs."""
