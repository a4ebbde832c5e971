import pytest

from immunoprofile.errors import PanelError
from immunoprofile.gating.panels import detect_panel
from immunoprofile.io.channels import (
    NK_MARKER,
    marker_channels,
    markers_in_label,
    scatter_channels,
)


@pytest.mark.parametrize(
    "label, expected",
    [
        ("CD3 FITC", ["CD3"]),
        ("cd3-fitc", ["CD3"]),
        ("CD3FITC", ["CD3"]),
        ("CD16+56 PE", [NK_MARKER]),
        ("CD16/56", [NK_MARKER]),
        ("CD16+CD56", [NK_MARKER]),
        ("CD56/16", [NK_MARKER]),
        ("CD56", [NK_MARKER]),
        ("CD45 PerCP", ["CD45"]),
        ("CD45 PerCP-Cy5.5", ["CD45"]),
        ("anti-CD4 V450", ["CD4"]),
        ("CD8a PE", ["CD8"]),
        ("CD45RA APC", ["CD45RA"]),
        ("CD19/CD5", ["CD19", "CD5"]),
        ("", []),
        (None, []),
        ("HLA-DR", []),
    ],
)
def test_markers_in_label(label, expected):
    assert markers_in_label(label) == expected


def test_marker_channels_maps_markers_to_pnn():
    pnn = ["FSC-A", "FL1-A", "FL2-A", "FL3-A"]
    pns = ["", "CD3 FITC", "CD56/16 PE", "CD45 PerCP"]
    assert marker_channels(pnn, pns) == {"CD3": "FL1-A", NK_MARKER: "FL2-A", "CD45": "FL3-A"}


def test_scatter_aliases():
    assert scatter_channels(["FS INT", "FS PEAK", "SS INT", "FL1"]) == {
        "FSC-A": "FS INT", "FSC-H": "FS PEAK", "SSC-A": "SS INT"}


@pytest.mark.parametrize("markers, tube", [
    ({"CD3", NK_MARKER, "CD45"}, "nk"),
    ({"CD3", "CD4", "CD45"}, "cd4"),
    ({"CD3", "CD8", "CD45"}, "cd8"),
])
def test_detect_panel(markers, tube):
    assert detect_panel(markers).tube == tube


def test_missing_cd45_names_markers_found():
    with pytest.raises(PanelError, match=r"no CD45 channel \(markers found: CD3, CD8\) — is "
                                         r"this a CD3/CD8/CD45 tube\?"):
        detect_panel({"CD3", "CD8"}, source="tube_07.fcs")


def test_unknown_panel_is_clear():
    with pytest.raises(PanelError, match="unknown panel .*CD19, CD5"):
        detect_panel({"CD19", "CD5"})


def test_manifest_tube_must_match_markers():
    with pytest.raises(PanelError, match="no CD4 channel.*manifest says"):
        detect_panel({"CD3", "CD8", "CD45"}, expected="cd4")


def test_several_panels_ask_for_manifest_tube():
    # the study's NK, CD4 and CD8 tubes and the 4-colour T tube all fit; none holds the rest
    with pytest.raises(PanelError, match="several panels"):
        detect_panel({"CD3", "CD4", "CD8", "CD45", NK_MARKER})


@pytest.mark.parametrize("markers, tube", [
    ({"CD3", "CD4", "CD8", "CD45"}, "tbnk4_t"),
    ({"CD3", NK_MARKER, "CD45", "CD19"}, "tbnk4_bnk"),
    ({"CD3", NK_MARKER, "CD45", "CD4", "CD19", "CD8"}, "tbnk"),
])
def test_a_tube_holding_other_tubes_markers_is_the_widest_panel(markers, tube):
    # a six-colour TBNK tube carries the study's CD4 tube's markers, but is not that tube
    assert detect_panel(markers).tube == tube


def test_the_study_panel_is_the_tubes_a_manifest_names():
    from immunoprofile.gating.panels import PANELS
    from immunoprofile.io.tubes import TUBES

    assert tuple(t for t, p in PANELS.items() if p.panel == "study") == TUBES
