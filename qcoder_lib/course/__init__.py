"""Course tooling, apart from the reusable core: the notebook runner behind ``make course``
(:mod:`.runner`), the figures notebooks record for the course report (:mod:`.metrics`), the
checks behind the notebooks' exercises (:mod:`.exercises`) and the student copies with the
solutions stubbed out (:mod:`.student`, ``make student``)."""
