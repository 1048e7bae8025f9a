"""dev8: self-hosted cloud development environments."""
import warnings

__version__ = "0.1.0"

# cryptography 51 deprecates DSA, and asyncssh (2.24) names DSA types in its annotations on
# import: every command and the server's log would open with a page of warnings about keys
# dev8 never accepts (users' keys are ed25519, ECDSA or RSA; core.auth).
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
