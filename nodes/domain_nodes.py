"""Compact-domain nodes: load, apply (chainable, with a strength) and save domain files."""

from __future__ import annotations

from . import paths
from . import types as T
from .common import (
    CATEGORY_GENERATOR,
    CATEGORY_LOADERS,
    bool_input,
    combo,
    float_input,
    node_error,
    register,
    socket,
    string_input,
)
from .generator_nodes import _clean_save_name

DOMAIN_LAYERS_TOOLTIP = ("Apply the domain only to these W+ layers: 'coarse', 'middle', 'fine' or entries like "
                         "'0-7'. Empty = every layer the domain has.")


@register("NADA Load Domain")
class NadaLoadDomain:
    DESCRIPTION = ("Loads a compact domain (a few-kilobyte .safetensors from NADA Train or `nada train --adapt "
                   "domain|stylespace`) from ComfyUI/models/stylegan/domains. Apply it with NADA Apply Domain.")
    CATEGORY = CATEGORY_LOADERS
    RETURN_TYPES = (T.DOMAIN, T.STRING)
    RETURN_NAMES = ("domain", "info")
    OUTPUT_TOOLTIPS = ("The domain, for NADA Apply Domain.", "What the domain is (kind, prompts, layers, metrics).")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"domain_name": combo(paths.list_models(paths.DOMAINS),
                                                  "Domain file in ComfyUI/models/stylegan/domains.")}}

    @classmethod
    def VALIDATE_INPUTS(cls, domain_name):
        try:
            paths.resolve_model(domain_name, paths.DOMAINS)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, domain_name, **_other_inputs):
        try:
            return paths.fingerprint([paths.resolve_model(domain_name, paths.DOMAINS)])  # no path: it ends up in saved images
        except paths.ModelNotFound:
            return ""

    def load(self, domain_name: str):
        from nada_core.domains import load_domain

        domain = load_domain(paths.resolve_model(domain_name, paths.DOMAINS))
        return (domain, describe_domain(domain))


def describe_domain(domain) -> str:
    """A few readable lines about a domain, for the node's text output."""
    from nada_core.domains.domain import provenance_facts

    s = domain.summary()
    facts = provenance_facts(domain.metadata)  # the file's own JSON: every field type-checked
    lines = [f"{domain.name or 'domain'}: {s['kind']}, {s['layers']} layers, {s['values']} values"
             f"{' (toRGB included)' if s['torgb'] else ''}, {s['resolution']} px"]
    if facts["target"]:
        lines.append(f"direction: {facts['source']!r} -> {facts['target']!r}")
    if "directional_similarity" in facts["metrics"]:
        before, after = facts["metrics"]["directional_similarity"]
        lines.append(f"directional similarity {before:.3f} -> {after:.3f}")
    return "\n".join(lines)


@register("NADA Apply Domain")
class NadaApplyDomain:
    DESCRIPTION = ("Renders the generator with a compact domain applied at a strength (0 = off, 1 = as trained, "
                   "negative or above 1 extrapolates). Chain several to mix domains. Nothing is copied and the input "
                   "generator is not changed.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.GENERATOR,)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The generator with the domain applied (chain into another NADA Apply Domain to mix).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The generator the domain was trained on (or one adapted from it, "
                                                 "or the output of another NADA Apply Domain)."),
                "domain": socket(T.DOMAIN, "The domain (NADA Load Domain, or NADA Train with a compact adapt)."),
                "strength": float_input(1.0, -5.0, 5.0, 0.05, "How strongly to apply it: 0 = off, 1 = as trained, "
                                                              "in between a partial change, outside 0-1 extrapolates."),
            },
            "optional": {"layers": string_input("", DOMAIN_LAYERS_TOOLTIP)},
        }

    def apply(self, generator, domain, strength: float, layers: str = ""):
        from nada_core.domains import apply_domains

        domain = _one_domain(self, domain)
        spec = (layers or "").strip() or None
        return (apply_domains(generator, [(domain, float(strength), spec) if spec else (domain, float(strength))]),)


def _domains(node, domain) -> list:
    """The domains on a NADA_DOMAIN input (one, or one per target of a multi-target run)."""
    from nada_core.domains import as_domain_list

    if domain is None:
        raise node_error(node, "no domain connected; NADA Train outputs one only with adapt 'domain' or 'stylespace'")
    return as_domain_list(domain)


def _one_domain(node, domain):
    """The single domain on a NADA_DOMAIN input; several (a multi-target run) is one clear error."""
    items = _domains(node, domain)
    if len(items) > 1:
        names = ", ".join(f"{i} = {getattr(d, 'name', '') or 'target'}" for i, d in enumerate(items))
        raise node_error(node, f"the domain input holds {len(items)} domains, one per target ({names}); select one "
                               "with NADA Pick Domain")
    return items[0]


@register("NADA Pick Domain")
class NadaPickDomain:
    DESCRIPTION = ("Selects one domain of a NADA Train run with several targets (one per line in NADA Text Direction), "
                   "for NADA Apply Domain or NADA Save Domain. Index 0 is the first target line.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.DOMAIN, T.STRING)
    RETURN_NAMES = ("domain", "name")
    OUTPUT_TOOLTIPS = ("The selected domain.", "Its name: the target, as a file-name-safe slug (e.g. pencil_sketch).")
    FUNCTION = "pick"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "domains": socket(T.DOMAIN, "NADA Train's domain output (one domain per target line), or any domain."),
                "index": ("INT", {"default": 0, "min": 0, "max": 63, "step": 1,
                                  "tooltip": "Which target: 0 = the first line of target_text, 1 = the second, ..."}),
            }
        }

    def pick(self, domains, index: int):
        from nada_core.domains import DomainSet

        items = _domains(self, domains)
        chosen = DomainSet(tuple(items)).pick(int(index))
        return (chosen, chosen.name or f"target{int(index)}")


@register("NADA Save Domain")
class NadaSaveDomain:
    DESCRIPTION = ("Saves a compact domain as ComfyUI/models/stylegan/domains/<name>.safetensors (a few kilobytes, "
                   "with its prompts, settings and metrics). It then appears in NADA Load Domain. The domains of a "
                   "run with several targets are saved as <name>_<target>.safetensors, one file each.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.STRING,)
    RETURN_NAMES = ("domain_name",)
    OUTPUT_TOOLTIPS = ("The saved file's name as NADA Load Domain lists it (several targets: one name per line).",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "domain": socket(T.DOMAIN, "The domain to save (NADA Train's domain output)."),
                "file_name": string_input("sketch", "File name without extension; saved under "
                                                    "ComfyUI/models/stylegan/domains/."),
                "overwrite": bool_input(False, "Replace an existing file of that name. Off: a number is added "
                                        "(sketch_00001) so earlier results are kept.", on="replace", off="keep both"),
            }
        }

    def save(self, domain, file_name: str, overwrite: bool):
        from nada_core.atomic import check_output
        from nada_core.domains import save_domain

        items = _domains(self, domain)
        stem = _clean_save_name(self, file_name)
        folder = paths.domain_save_dir()
        # One domain: <name>.safetensors; several (one per target): <name>_<target>.safetensors each.
        stems = [stem] if len(items) == 1 else [f"{stem}_{d.name or f'target{i}'}" for i, d in enumerate(items)]
        listed = []
        for d, one in zip(items, stems):
            target = folder / f"{one if overwrite else paths.free_stem(folder, one)}.safetensors"
            check_output(target, suffixes=(".safetensors",), what="file name")
            target.parent.mkdir(parents=True, exist_ok=True)
            save_domain(d, target)
            listed.append(target.relative_to(folder).as_posix())
        text = "\n".join(listed)
        return {"ui": {"text": [text]}, "result": (text,)}
