"""Every exception beaker-core raises on purpose derives from :class:`BeakerError`."""


class BeakerError(Exception):
    """Base class of beaker-core's errors."""


class ConfigurationError(BeakerError, ValueError):
    """An option is missing, unknown, or of the wrong type or value."""


class PluginNotFound(BeakerError, LookupError):
    """No installed plugin provides the requested backend, serializer or lock."""


class PluginLoadError(BeakerError, ImportError):
    """An installed plugin failed to import; raised when one of its names is asked for."""


class DuplicatePlugin(BeakerError):
    """Two plugins register the same name."""


class BackendError(BeakerError):
    """A storage backend failed (unreachable server, I/O error...). The message names backend and location."""


class SerializationError(BeakerError, TypeError):
    """A value could not be serialized (the message names the type and the key) or stored data is unreadable."""


class ValueTooLarge(BeakerError, ValueError):
    """A value exceeds what its medium can hold (cookie, memcached item...)."""


class LockTimeout(BeakerError, TimeoutError):
    """A lock could not be acquired within its timeout."""


class SecurityWarning(UserWarning):
    """A setting works but is unsafe, such as a weak session key; ``session.strict_keys = true`` (or
    ``python -W error::beaker_core.exceptions.SecurityWarning``) makes it an error."""


# Beaker's names, kept so that code catching them keeps working.
BeakerException = BeakerError
InvalidCacheBackendError = PluginNotFound
