"""The reference pipeline: NYC flights 2013, from landed daily exports to model features."""
