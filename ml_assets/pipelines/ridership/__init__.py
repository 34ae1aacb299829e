"""The third reference pipeline: daily riders at Chicago's Clark/Lake L station, 2001-2016, from
monthly exports to a day's riders forecast from the calendar, the weather, game days and the
station's recent ridership (modeldata's ``Chicago`` data set)."""
