"""Demo folders (format 1) and converters from and to other formats."""
from robolearn.data.format import (  # noqa: F401
    ActionSpec,
    DemoFormatError,
    DemoMeta,
    DemoReader,
    DemoWriter,
    Episode,
    ObsFieldSpec,
    load_folder,
    read_meta,
)
