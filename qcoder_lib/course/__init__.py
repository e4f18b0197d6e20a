"""Course tooling, apart from the reusable core: the notebook runner behind ``make course``
(:mod:`.runner`) and the figures notebooks record for the course report (:mod:`.metrics`)."""
