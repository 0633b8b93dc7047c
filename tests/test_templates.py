"""clip_templates: the shipped template groups and LASP list validate, bad files fail naming the problem."""
import json

import pytest

import clip_templates as ct
from clip_templates import TemplateFileError

DATASET_NAMES = ["Caltech101", "DescribableTextures", "EuroSAT", "FGVCAircraft", "Food101", "ImageNet", "ImageNetA",
                 "ImageNetR", "ImageNetSketch", "ImageNetV2", "OxfordFlowers", "OxfordPets", "StanfordCars", "SUN397",
                 "UCF101"]


def write(tmp_path, data, name="groups.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_every_dataset_has_valid_groups():
    entries = ct.load_template_groups()
    assert sorted(entries) == sorted(DATASET_NAMES)
    for name, entry in entries.items():
        groups = ct.template_groups(name)
        assert [len(g) for g in groups] == list(entry.sizes)
        assert [t for g in groups for t in g] == list(entry.templates)  # consecutive runs covering the list
        assert all(t.count("{}") == 1 and "  " not in t for t in entry.templates), name


def test_group_counts_and_heads_match_the_published_lists():
    sizes = {k: list(v.sizes) for k, v in ct.load_template_groups().items()}
    assert sizes["ImageNet"] == [1, 1, 1, 1, 2, 2, 3, 1, 1, 1, 7, 2, 1, 2, 1, 1, 1, 1, 1, 1]
    assert sizes["ImageNetSketch"] == [1, 1, 1, 1, 2, 2, 3, 1, 1, 1, 2, 2, 1, 1, 1, 1]
    assert sizes["EuroSAT"] == [1, 1, 2, 2, 4, 2] and sizes["OxfordPets"] == [1, 2, 1, 1, 4, 2]
    assert sizes["StanfordCars"] == [3, 1, 1, 4, 2] and sizes["Food101"] == [1, 3, 4, 2]
    assert sizes["SUN397"] == [1, 1, 4, 2] and sizes["UCF101"] == [1, 1, 1, 1, 4, 2]
    assert ct.group_heads("Caltech101") == ["{} texture.", "a photo of a {}.", "a photo of many {}.",
                                            "a low resolution photo of the {}.", "a good photo of the {}."]
    assert ct.group_heads("UCF101")[:2] == ["a photo of a person doing {}.", "a {} in a video game."]
    heads = ct.group_heads("ImageNet")
    assert len(heads) == 20 and heads[4] == "itap of a {}." and heads[-1] == "{} texture."
    assert ct.dataset_template_groups("ImageNet").head_indices[:6] == [0, 1, 2, 3, 4, 6]
    assert ct.template_groups("ImageNet")[10][-1] == "a bad photo of the {}."
    # Food101's first template: the published list has a double space there; fixed in the data
    assert ct.group_heads("Food101")[0] == "a photo of a {}."


def test_config_stems_and_aliases_resolve():
    assert ct.template_groups("dtd") == ct.template_groups("DescribableTextures")
    assert ct.template_groups("fgvc_aircraft") == ct.template_groups("FGVCAircraft")
    assert ct.template_groups("imagenet_sketch") == ct.template_groups("ImageNetSketch")
    with pytest.raises(KeyError, match=r'"Flowers" .*known: Caltech101'):
        ct.template_groups("Flowers")


def test_lasp_list():
    templates = ct.lasp_templates()
    assert len(templates) == 35 and templates.count("a bad photo of the {}.") == 2
    assert templates[0] == "a photo of a {}, a type of flower." and templates[-1] == "a good photo of a {}."


def test_existing_zero_shot_templates_still_work():
    assert ct.template_for("EuroSAT") == "a centered satellite photo of {}."
    assert len(ct.imagenet_templates_select()) == 7


def test_user_groups_file(tmp_path):
    path = write(tmp_path, {"datasets": {"MySet": {"templates": ["a {}.", "an image of a {}.", "{} art."],
                                                   "groups": [2, 1]}}})
    assert ct.template_groups("MySet", path) == [["a {}.", "an image of a {}."], ["{} art."]]
    assert ct.group_heads("myset", path) == ["a {}.", "{} art."]


@pytest.mark.parametrize("entry, message", [
    ({"templates": ["a {}.", "b {}."], "groups": [1, 2]},
     r"dataset 'Bad': groups \[1, 2\] cover 3 templates but the list has 2"),
    ({"templates": ["a {}.", "b."], "groups": [1, 1]},
     r"dataset 'Bad', template 1: template 'b\.' must contain exactly one"),
    ({"templates": ["a {} {}."], "groups": [1]}, r"template 'a \{\} \{\}\.' must contain exactly one"),
    ({"templates": ["a {0}{}."], "groups": [1]}, r"has a brace besides"),
    ({"templates": ["a photo of a  {}."], "groups": [1]},
     r"template 0: template 'a photo of a  \{\}\.' has leading/trailing or repeated whitespace; "
     r"write it as 'a photo of a \{\}\.'"),
    ({"templates": ["a {}."], "groups": [0, 1]}, r"group 0 has size 0"),
    ({"templates": ["a {}."], "groups": [1.0]}, r"group 0 has size 1\.0"),
    ({"templates": ["a {}."], "groups": []}, r"'groups' must be a non-empty list"),
    ({"templates": [], "groups": [1]}, r"'templates' must be a non-empty list"),
    ({"templates": ["a {}."], "group": [1]}, r"unknown key\(s\) \['group'\]"),
])
def test_bad_groups_file_names_file_dataset_and_problem(tmp_path, entry, message):
    path = write(tmp_path, {"datasets": {"Good": {"templates": ["a {}."], "groups": [1]}, "Bad": entry}})
    with pytest.raises(TemplateFileError, match=message) as err:
        ct.template_groups("Good", path)  # the whole file is validated, not only the entry asked for
    assert str(err.value).startswith(path)


def test_bad_file_structure(tmp_path):
    with pytest.raises(TemplateFileError, match="not valid JSON"):
        ct.load_template_groups(write(tmp_path, "{nope"))
    with pytest.raises(TemplateFileError, match="'datasets' must be a non-empty object"):
        ct.load_template_groups(write(tmp_path, {"datasets": {}}))
    with pytest.raises(TemplateFileError, match="alias 'x' points to 'Nope'"):
        ct.load_template_groups(write(tmp_path, {"aliases": {"x": "Nope"},
                                                 "datasets": {"A": {"templates": ["{}"], "groups": [1]}}}))
    with pytest.raises(FileNotFoundError, match="template file not found"):
        ct.load_template_groups(str(tmp_path / "missing.json"))
    with pytest.raises(TemplateFileError, match=r"LASP_TEMPLATES, template 1: template 'b' must contain"):
        ct.lasp_templates(write(tmp_path, {"LASP_TEMPLATES": ["a {}.", "b"]}, "lasp.json"))
