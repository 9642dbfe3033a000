"""phiscrub: de-identification of DICOM studies and whole-slide images, verified and audited."""

__version__ = "0.1.0"
