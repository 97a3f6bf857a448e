import os


def test_import_turns_telemetry_off():
    import defectops  # noqa: F401

    for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
                       "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false", "GX_ANALYTICS_ENABLED": "false"}.items():
        assert os.environ.get(key) == value


def test_ultralytics_settings_and_local_font():
    from defectops.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics.utils import ONLINE, SETTINGS, USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    assert SETTINGS["sync"] is False and SETTINGS["mlflow"] is False
    assert ONLINE is False  # no DNS probe happened
    assert check_font("Arial.ttf") == USER_CONFIG_DIR / "Arial.ttf"  # found locally, nothing downloaded
