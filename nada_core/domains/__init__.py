"""Compact domains: a trained style as a few-kilobyte file, with strength, mixing and baking.

``load_domain(path)`` / ``save_domain(domain, path)`` (:mod:`.files`), ``apply_domains(G,
[(domain, strength), ...])`` -> a generator rendering with them (no copy of the base weights) and
``bake(G, domains)`` -> a plain generator (:mod:`.apply`), ``new_domain(G, kind)`` (:mod:`.domain`).
Kinds: ``domain`` (``s * (1 + d)``, HyperDomainNet) and ``stylespace`` (``s + delta``, StyleDomain).
"""

from .apply import DomainUse, applied_domains, apply_domains, bake, check_domain, materialize, unwrap
from .domain import Domain, DomainSet, as_domain_list, new_domain
from .files import DOMAIN_FILE, is_domain_file, load_domain, read_domain_header, save_domain
from .layers import KINDS, StyleLayer, style_layers

__all__ = ["DOMAIN_FILE", "Domain", "DomainSet", "DomainUse", "KINDS", "StyleLayer", "applied_domains",
           "apply_domains", "as_domain_list", "bake", "check_domain", "is_domain_file", "load_domain", "materialize",
           "new_domain", "read_domain_header", "save_domain", "style_layers", "unwrap"]
