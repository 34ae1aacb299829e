"""The second reference pipeline: Chicago taxi trips of 2022, from monthly exports to whether the
rider tips (binary classification), on the real trips of modeldata's ``taxi`` data set."""
