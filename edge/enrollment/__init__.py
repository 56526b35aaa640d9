"""Guided enrollment: photos and camera frames checked for quality, pose and identity before they become templates.

A template that is a copy of one already stored, that does not look like the
person's other templates, or that matches somebody else would make the door
wrong in ways nobody notices until a stranger walks in; each is refused here
with one line saying why and which flag overrides it.
"""

from .guidance import ENROLL_PROMPTS, advice
from .sanity import DUPLICATE_FRACTION, EnrollRules, TemplateCheck, Verdict
from .session import enroll_camera, enroll_images, photos_in

__all__ = ["DUPLICATE_FRACTION", "ENROLL_PROMPTS", "EnrollRules", "TemplateCheck", "Verdict", "advice",
           "enroll_camera", "enroll_images", "photos_in"]
