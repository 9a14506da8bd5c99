"""Exploring embedding rasters without labels: similarity to a query, k-means clusters."""
