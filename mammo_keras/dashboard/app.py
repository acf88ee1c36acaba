"""The mammo-keras dashboard, a Streamlit app: single case, cohort and model card pages.

Serve it with `mammo-keras dashboard [--model M] [--results RUN_DIR] [--port P]`; the
options arrive as environment variables (`settings.py`). Every error a user can cause
(a bad upload, a moved image, a run folder without predictions) is shown in the page as
one line; the server log keeps the trace and the app goes on serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from mammo_keras.dashboard.case_reports import case_report
from mammo_keras.dashboard.cases import (UPLOAD_TYPES, crop_caption, decide, draw_crop_box,
                                         positive_class, read_upload, window_level)
from mammo_keras.dashboard.cohort import (ERROR_KINDS, error_cases, load_cohort,
                                          operating_point, plot_operating_point)
from mammo_keras.dashboard.demo_model import find_demo_run, train_demo_model
from mammo_keras.dashboard.model_cards import NOT_FOR_DIAGNOSIS, model_card, model_card_markdown
from mammo_keras.dashboard.settings import DashboardSettings
from mammo_keras.data.errors import DataError
from mammo_keras.data.readers import read_image
from mammo_keras.evaluation.competence import answer_note, trained_on
from mammo_keras.explain import METHOD_NAMES

LOG = logging.getLogger("mammo_keras.dashboard")
PAGES = ("Single case", "Cohort", "Model card")
METHOD_LABELS = {name: method for method, name in METHOD_NAMES.items()}
CACHED_ANALYSES = 16
PREDICTED_OUTLINE = (0, 255, 255)  # cyan: the model's lesion; green marks the annotated one


@dataclasses.dataclass
class LoadedModel:
    """The model being served: `predictor` for any format, `keras_model` for heat-maps
    (None for SavedModel / TFLite artefacts), and its card."""

    path: str
    predictor: object
    keras_model: object | None
    class_names: list[str]
    card: dict


def load_model(path: str) -> LoadedModel:
    """The model at `path`, loaded once per version of the file (a retrained model.keras
    written over the old one is loaded again)."""
    stat = Path(path).stat()
    return _load_model(path, (stat.st_mtime_ns, stat.st_size))


@st.cache_resource(show_spinner="Loading the model...")
def _load_model(path: str, version: tuple) -> LoadedModel:
    """`version` (the file's mtime and size) is part of Streamlit's cache key only."""
    from mammo_keras.export.runtime import keras_predictor, load_predictor
    from mammo_keras.models.loading import load_model as load_keras_model

    if path.endswith(".keras"):
        model = load_keras_model(path)
        predictor = keras_predictor(model, path)
    else:
        model, predictor = None, load_predictor(path)
    return LoadedModel(path, predictor, model, list(predictor.class_names),
                       model_card(path, model))


def analyse(loaded: LoadedModel, key: str, image: np.ndarray, class_index: int | None,
            method: str, laterality: str | None = None) -> dict:
    """Probabilities (and the heat-map when the model is a Keras one) of one image, kept
    in the session so that moving a slider does not recompute them.

    Returns {"probabilities": (K,), "heatmap": (H, W) in [0, 1] or None, "class_index",
    "geometry": the crop [flipped, top, left, height, width], "masks": {name: (H, W)
    probabilities} of a segmentation model's mask outputs ({} for a classifier)}.
    """
    cache = st.session_state.setdefault("analyses", {})
    # everything that changes the result: the model object too (a zero-shot model rebuilt on
    # new prompts has the same path), and the laterality (the same bytes uploaded as a left
    # and as a right film are flipped differently)
    cache_key = (loaded.path, id(loaded.keras_model), key, class_index, method, laterality)
    if cache_key not in cache:
        result = None
        if loaded.keras_model is not None and explainable(loaded.keras_model):
            from mammo_keras.explain import explain_image

            result = explain_image(loaded.keras_model, image, method, None, class_index,
                                   loaded.predictor.preprocessing, laterality)
        if result is None:
            processed, geometry = loaded.predictor.preprocess(image, laterality)
            outputs = loaded.predictor.outputs(processed[None])
            probabilities = outputs.pop("probabilities")[0]
            result = {"probabilities": probabilities, "heatmap": None, "geometry": geometry,
                      "class_index": int(np.argmax(probabilities)),
                      "masks": {name: mask_on_image(loaded.predictor.preprocessor, value[0],
                                                    geometry, image.shape)
                                for name, value in outputs.items()}}
        if len(cache) >= CACHED_ANALYSES:
            cache.pop(next(iter(cache)))
        cache[cache_key] = result
    return cache[cache_key]


def mask_on_image(preprocessor, mask: np.ndarray, geometry, shape) -> np.ndarray:
    """A mask output (S, S[, 1]) on the model's grid -> (H, W) float32 on the mammogram, by
    the model's `MammogramPreprocessor`."""
    return preprocessor.invert(np.asarray(mask, np.float32), geometry, shape[:2])[..., 0].numpy()


def outline_masks(picture: Image.Image, masks: dict, threshold: float = 0.5,
                  colour: tuple = PREDICTED_OUTLINE) -> Image.Image:
    """`picture` with the edge of each mask (H, W probabilities, any size: resized to the
    picture) above `threshold` drawn in `colour` (cyan: the model's predicted lesion)."""
    from scipy import ndimage

    marked = np.asarray(picture.convert("RGB")).copy()
    for mask in masks.values():
        resized = Image.fromarray((np.asarray(mask) > threshold).astype(np.uint8) * 255)
        inside = np.asarray(resized.resize(picture.size, Image.NEAREST)) > 0
        marked[inside & ~ndimage.binary_erosion(inside, iterations=2)] = colour
    return Image.fromarray(marked)


def explainable(model) -> bool:
    """Whether Grad-CAM has a feature map to use in `model`: a convolutional one, or a CLIP
    tower's patch tokens."""
    from mammo_keras.errors import UserError
    from mammo_keras.explain.gradcam import find_target_layer
    from mammo_keras.models.zero_shot import token_grad_cam_probe

    if token_grad_cam_probe(model) is not None:
        return True
    try:
        find_target_layer(model)
    except UserError:
        return False
    return True


def display_picture(image: np.ndarray, heatmap: np.ndarray | None, opacity: float,
                    center: float, width: float, geometry=None,
                    caption: str | None = None, outlines: dict | None = None) -> Image.Image:
    """The windowed mammogram with the heat-map blended in (at most 1024 px high) and,
    given the geometry, the crop box: the part of the image the model sees; the predicted
    lesion `outlines` ({name: (H, W) probabilities}) in cyan; with a heat-map, `caption`
    (the class explained and its probability) and the colour bar under it."""
    from mammo_keras.explain import overlay
    from mammo_keras.explain.explain import with_colour_bar

    windowed = window_level(image, center, width)
    if heatmap is None:
        heatmap, opacity, caption = np.zeros_like(windowed), 0.0, None
    picture = overlay(windowed, heatmap, opacity)
    if outlines:
        picture = outline_masks(picture, outlines)
    if geometry is not None:
        picture = draw_crop_box(picture, geometry, image.shape)
    return picture if caption is None else with_colour_bar(picture, caption)


def heatmap_controls(loaded: LoadedModel, key: str) -> tuple[str, int | None, float]:
    """Method, explained class (None: the most likely) and opacity widgets."""
    if loaded.keras_model is None:
        st.caption("Heat-maps need the Keras model (.keras); this is a "
                   f"{loaded.card['format']} artefact.")
        return "gradcam", None, 0.0
    method = METHOD_LABELS[st.radio("Heat-map", list(METHOD_LABELS), horizontal=True,
                                    key=f"{key}_method")]
    choice = st.selectbox("Explain class", ["most likely", *loaded.class_names],
                          key=f"{key}_class")
    class_index = None if choice == "most likely" else loaded.class_names.index(choice)
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key=f"{key}_opacity")
    return method, class_index, opacity


def single_case_page(loaded: LoadedModel, settings: DashboardSettings) -> None:
    st.header("Single case")
    upload = st.file_uploader(
        f"Mammogram: DICOM, PNG (8 / 16-bit), PGM, JPEG, TIFF or BMP; at most "
        f"{settings.max_upload_mb:g} MB", type=list(UPLOAD_TYPES), key="upload")
    if upload is None:
        st.info("Upload a mammogram to see the class probabilities, the decision at the "
                "threshold (sidebar) and where the model looked.")
        return
    data = upload.getvalue()
    try:
        image, meta = read_upload(upload.name, data, settings.max_upload_mb)
    except DataError as error:
        st.error(f"Cannot use this upload. {error}")
        return
    threshold = st.session_state["threshold"]
    left, right = st.columns([3, 2])
    with right:
        method, class_index, opacity = heatmap_controls(loaded, "case")
        center = st.slider("Window level (centre)", 0.0, 1.0, 0.5, 0.01, key="window_center")
        width = st.slider("Window width", 0.05, 1.0, 1.0, 0.01, key="window_width")
    result = analyse(loaded, hashlib.sha256(data).hexdigest(), image, class_index, method,
                     meta.get("laterality"))
    probabilities = np.asarray(result["probabilities"], np.float64)
    decision = decide(probabilities, loaded.class_names, threshold)
    explained = loaded.class_names[result["class_index"]]
    masks = result.get("masks") or {}
    picture = display_picture(image, result["heatmap"], opacity, center, width,
                              result["geometry"], caption=f"{METHOD_NAMES[method]} of "
                              f"{explained}, P = {probabilities[result['class_index']]:.2f}",
                              outlines=masks)
    explanation = (f"{method} of class {explained}" if result["heatmap"] is not None
                   else "none (not a Keras model)" if loaded.keras_model is None
                   else "none (no convolutional feature map)")
    with left:
        st.image(picture, caption=f"{upload.name}: {image.shape[1]} x {image.shape[0]} px, "
                                  f"{meta.get('format', '?').upper()}; heat-map: {explanation}; "
                                  f"yellow: {crop_caption(result['geometry'], meta)}"
                                  + ("; cyan: the predicted lesion outline (P > 0.5)"
                                     if masks else ""))
    with right:
        verdict = (f"P({decision['positive']}) = {decision['p_positive']:.3f}, "
                   f"threshold {threshold:.2f}")
        if decision["flagged"]:
            st.error(f"Flagged for review: {verdict}")
        else:
            st.success(f"Not flagged: {verdict}")
        note = answer_note(loaded.predictor.description, image.shape[:2], meta.get("view"))
        if note:
            st.warning(f"What this model knows: trained on "
                       f"{trained_on(loaded.predictor.description)}; {note}.")
        density = density_line(probabilities, loaded.class_names)
        if density:
            st.info(density)
        st.markdown("| class | probability |\n|---|---:|\n" + "\n".join(
            f"| {name} | {p:.3f} |" for name, p in zip(loaded.class_names, probabilities)))
        arguments = (picture, upload.name, probabilities, loaded.class_names, decision,
                     threshold, Path(loaded.path).name, explanation)
        st.download_button("Case report (PDF)",
                           lambda: case_report(*arguments, fmt="pdf", note=note),
                           file_name=f"{Path(upload.name).stem}_report.pdf",
                           mime="application/pdf", key="report_pdf")
        st.download_button("Case report (PNG)",
                           lambda: case_report(*arguments, fmt="png", note=note),
                           file_name=f"{Path(upload.name).stem}_report.png",
                           mime="image/png", key="report_png")


def density_line(probabilities: np.ndarray, class_names: list[str]) -> str | None:
    """"Density C (P = 0.61); dense (C + D): P = 0.83" for a density model, else None."""
    from mammo_keras.evaluation.metrics import dense_split

    split = dense_split(class_names)
    if split is None:
        return None
    best = int(np.argmax(probabilities))
    dense = " + ".join(class_names[k] for k in split[1])
    return (f"Density {class_names[best]} (P = {probabilities[best]:.2f}); dense ({dense}): "
            f"P = {float(np.sum(probabilities[split[1]])):.2f}")


def prompt_editor(loaded: LoadedModel) -> LoadedModel:
    """For a zero-shot model: its class prompts, editable (one per line) when its CLIP file
    is at hand; returns the model to serve (rebuilt on the edited prompts once applied)."""
    from mammo_keras.models.zero_shot import zero_shot_settings

    settings = zero_shot_settings(loaded.keras_model) if loaded.keras_model is not None \
        else None
    if settings is None:
        return loaded
    edited = st.session_state.get("zero_shot_model")
    current = edited.card.get("prompts", settings["prompts"]) if edited else settings["prompts"]
    clip_file = Path(str(settings.get("clip")))
    with st.sidebar.expander("Zero-shot prompts", expanded=False):
        texts = {name: st.text_area(f"Class {name}", "\n".join(prompts), key=f"prompt_{name}")
                 for name, prompts in current.items()}
        if not clip_file.is_file():
            st.caption(f"Read-only: the CLIP model {clip_file.name} is not at hand.")
        elif st.button("Apply prompts", key="apply_prompts"):
            prompts = {name: [line.strip() for line in text.splitlines() if line.strip()]
                       for name, text in texts.items()}
            st.session_state["zero_shot_model"] = rebuilt_zero_shot(loaded, settings, prompts)
            st.rerun()
    return st.session_state.get("zero_shot_model") or loaded


def rebuilt_zero_shot(loaded: LoadedModel, settings: dict, prompts: dict) -> LoadedModel:
    """`loaded`'s zero-shot classifier made again on `prompts` (same CLIP model, size and
    preprocessing)."""
    from mammo_keras.export.runtime import keras_predictor
    from mammo_keras.models.zero_shot import build_zero_shot

    model = build_zero_shot(settings["clip"], prompts, preprocessing=settings["preprocessing"],
                            input_shape=tuple(loaded.keras_model.input_shape[1:]))
    card = {**loaded.card, "prompts": prompts}
    return LoadedModel(loaded.path, keras_predictor(model, loaded.path), model,
                       list(loaded.class_names), card)


def mark_lesions(picture: Image.Image, row: dict, original_shape: tuple) -> Image.Image:
    """Outline the annotated lesions of a predictions.csv row in green: its masks' edges,
    and circles for its ROIs ([x, y, radius] in original pixels)."""
    import json

    from scipy import ndimage

    marked = np.asarray(picture).copy()
    for mask_path in json.loads(row.get("masks") or "[]"):
        try:
            mask = Image.open(mask_path).convert("L").resize(picture.size, Image.NEAREST)
        except OSError:
            continue  # a moved mask only loses its outline
        inside = np.asarray(mask) > 0
        edge = inside & ~ndimage.binary_erosion(inside, iterations=2)
        marked[edge] = (0, 255, 0)
    marked = Image.fromarray(marked)
    draw = ImageDraw.Draw(marked)
    scale = picture.height / original_shape[0]
    for x, y, radius in json.loads(row.get("rois") or "[]"):
        r = max(radius * scale, 6)
        draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r],
                     outline=(0, 255, 0), width=2)
    return marked


def cohort_page(loaded: LoadedModel, results: Path | None) -> None:
    st.header("Cohort")
    if results is None:
        st.info("No evaluated run: start the dashboard with --results RUN_DIR (a training run "
                "folder, or the output of 'mammo-keras evaluate').")
        return
    cohort = load_cohort(results)
    threshold = st.session_state["threshold"]
    point = operating_point(cohort, threshold)
    st.caption(f"{len(cohort.rows)} evaluated images of {results}; decision: flag when "
               f"P({cohort.positive}) >= threshold.")

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    columns = st.columns(4)
    for column, name in zip(columns, ("sensitivity", "specificity", "ppv", "npv")):
        column.metric(name.upper() if len(name) == 3 else name.capitalize(), rate(point[name]))
    intervals = cohort.metrics.get("confidence_intervals", {})
    auc = cohort.metrics.get("roc_auc_macro")
    if auc is not None:
        low_high = intervals.get("roc_auc_macro")
        st.markdown(f"Macro ROC-AUC {auc:.3f}" + (f" (95 % CI {low_high[0]:.3f} - "
                                                 f"{low_high[1]:.3f})" if low_high else ""))
    st.pyplot(plot_operating_point(cohort, threshold), clear_figure=True)
    st.subheader("Errors at this threshold")
    meaning = {ERROR_KINDS[0]: f"missed {cohort.positive}",
               ERROR_KINDS[1]: f"flagged, not {cohort.positive}"}
    kind = st.radio("Show", ERROR_KINDS, horizontal=True, key="error_kind",
                    format_func=lambda k: f"{k} ({meaning[k]})")
    cases = error_cases(cohort, threshold, kind)
    if not cases:
        st.success(f"No {kind} at threshold {threshold:.2f}.")
        return
    labels = [f"{Path(row['path'].split('::')[-1]).name} (true {row['label']}, "
              f"P({cohort.positive}) = {float(row[f'p_{cohort.positive}']):.3f})" for row in cases]
    chosen = st.selectbox(f"{len(cases)} {kind}", range(len(cases)),
                          format_func=lambda i: labels[i], key="error_case")
    row = cases[chosen]
    method, class_index, opacity = heatmap_controls(loaded, "cohort")
    try:
        image, _ = read_image(row["path"])
    except DataError as error:
        st.error(f"Cannot show this case. {error}")
        return
    result = analyse(loaded, row["path"], image, class_index, method)
    masks = result.get("masks") or {}
    picture = mark_lesions(display_picture(image, result["heatmap"], opacity, 0.5, 1.0,
                                           outlines=masks), row, image.shape)
    if result["heatmap"] is not None:
        from mammo_keras.explain.explain import with_colour_bar

        index = result["class_index"]
        picture = with_colour_bar(picture, f"{METHOD_NAMES[method]} of "
                                           f"{loaded.class_names[index]}, P = "
                                           f"{float(result['probabilities'][index]):.2f}")
    st.image(picture, caption=f"{labels[chosen]}; annotated lesions outlined in green"
                              + ("; the model's predicted lesion in cyan" if masks else ""))


def model_card_page(loaded: LoadedModel) -> None:
    st.header("Model card")
    st.markdown(model_card_markdown(loaded.card))


def model_and_results(settings: DashboardSettings) -> tuple[str, Path | None]:
    """The model to serve and the run folder of the cohort page; trains the demo model
    (with a progress bar) when no model was given and none is there yet."""
    if settings.model is not None:
        folder = settings.model.parent
        own_run = folder if (folder / "predictions.csv").is_file() else None
        return str(settings.model), settings.results or own_run
    run = find_demo_run()
    if run is None:
        st.info("No model given: training the demo model on synthetic phantoms. This happens "
                "once (a few minutes on a CPU); later starts reuse it.")
        bar = st.progress(0.0, text="starting")
        run = train_demo_model(report=lambda fraction, text: bar.progress(
            min(max(fraction, 0.0), 1.0), text=text))
        bar.empty()
    return str(run / "model.keras"), settings.results or run


def main() -> None:
    st.set_page_config(page_title="mammo-keras dashboard", layout="wide")
    settings = DashboardSettings.from_environment()
    st.sidebar.title("mammo-keras")
    page = st.sidebar.radio("Page", PAGES, key="page")
    st.sidebar.warning(f"Not for diagnosis. {NOT_FOR_DIAGNOSIS}")
    try:
        model_path, results = model_and_results(settings)
        loaded = prompt_editor(load_model(model_path))
        positive = positive_class(loaded.class_names)
        st.sidebar.slider(f"Decision threshold on P({positive})", 0.0, 1.0, 0.5, 0.01,
                          key="threshold")
        st.sidebar.caption(f"Model: {Path(model_path).name} ({loaded.card['backbone']}, "
                           f"{loaded.card['head']})")
        if page == "Single case":
            single_case_page(loaded, settings)
        elif page == "Cohort":
            cohort_page(loaded, results)
        else:
            model_card_page(loaded)
    except (DataError, ValueError, OSError) as error:
        LOG.exception("dashboard page failed")
        st.error(str(error))
    except Exception as error:  # never a trace in the page; the log keeps it
        LOG.exception("dashboard page failed")
        st.error(f"Unexpected error ({type(error).__name__}): {error}")


if __name__ == "__main__":  # how `streamlit run` and AppTest run the script
    main()
