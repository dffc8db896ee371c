"""Exception types shared by every part of updlrm."""


class UpdlrmError(Exception):
    """Base class of every error updlrm raises on purpose."""


class InvalidInputError(UpdlrmError, ValueError):
    """A request (indices, offsets, weights, dense features, feeds) is malformed.

    The message names the table or input, the bag and the offending value.
    """


class ModelImportError(UpdlrmError):
    """An ONNX model cannot be imported: malformed, or a pattern updlrm does not recognise.

    The message names the node and says why.
    """


class CapacityError(UpdlrmError):
    """A table or plan does not fit the memory it was given (says which and by how much)."""


class DatasetError(UpdlrmError):
    """A dataset cannot be fetched, or what was fetched is not what was expected."""
