from alignkit.objectives.reference_free import alphapo, cpo, odds_blur, orpo, simpo  # noqa: F401
