"""The page in a real browser: Chromium headless through Selenium (Debian's
``chromium`` and ``chromium-driver``; `.ci/run` installs them).  Skipped, with
the reason, where they are not installed.  A failing test leaves a screenshot
(its path is in the failure message)."""
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: "
                                "pip install 'aslnet[test]'")

import aslnet  # noqa: E402
from aslnet.applications.mobilenet import preprocess_input  # noqa: E402
from aslnet.serving import create_app, decode_image  # noqa: E402

from .test_app import tiny_model  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="Chromium or chromedriver not installed (Debian: "
    "apt-get install chromium chromium-driver; .ci/run does it)")
DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


@pytest.fixture(scope="module")
def model():
    return tiny_model(classes=10, seed=4)


@pytest.fixture(scope="module")
def url(model):
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, create_app(model, class_names=DIGITS), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.shutdown()


def _browser(javascript=True):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1024,900"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as e:         # a browser that cannot start here: say why
        pytest.skip(f"Chromium does not start: {type(e).__name__}: {e}")
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(request, tmp_path):
    driver = _browser(javascript=getattr(request, "param", True))
    yield driver
    failed = getattr(request.node, "rep_call", None)     # set by conftest.py
    if failed is not None and failed.failed:
        out = Path(os.environ.get("ASLNET_TEST_ARTIFACTS", tmp_path)) / \
            f"{request.node.name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        print(f"screenshot of the failure: {out}")
    driver.quit()


def _digit_photo(shared_dir):
    """A phone photo of a 7 stored sideways (EXIF orientation 6), 3024 x 3024."""
    path = shared_dir / "data" / "sign-language-digits" / "7" / "IMG_5874.JPG"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _expected(model, path):
    x = preprocess_input(decode_image(path.read_bytes(), model.input_shape[1:3]))
    return DIGITS[int(model.predict(x[None], verbose=0)[0].argmax())]


def _wait_for_result(driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 30).until(EC.visibility_of_element_located((By.ID, "top-class")))
    return driver.find_element(By.ID, "top-class").text


def test_upload_a_photo_and_read_the_class(browser, url, model, shared_dir, tmp_path):
    from selenium.webdriver.common.by import By
    photo = _digit_photo(shared_dir)
    browser.get(url)
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is not None
    browser.find_element(By.ID, "file").send_keys(str(photo))   # classifies on choice
    shown = _wait_for_result(browser)
    assert shown == _expected(model, photo)
    preview = browser.find_element(By.ID, "preview")
    assert preview.is_displayed() and preview.get_attribute("src").startswith("blob:")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10 and bars[0].find_element(By.CLASS_NAME, "name").text == shown
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    browser.save_screenshot(str(tmp_path / "desktop.png"))


def test_a_bad_file_gets_plain_words(browser, url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    browser.get(url)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    box = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda d: box.is_displayed())
    assert "not a picture we can read" in box.text


def test_phone_width_layout(browser, url, model, shared_dir):
    """400 CSS pixels wide: nothing sticks out sideways, the top class is large and
    the bars fit."""
    from selenium.webdriver.common.by import By
    browser.set_window_size(400, 860)
    browser.get(url)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400
    browser.find_element(By.ID, "file").send_keys(str(_digit_photo(shared_dir)))
    _wait_for_result(browser)
    assert browser.execute_script(
        "return document.documentElement.scrollWidth") <= width
    for el in browser.find_elements(By.CSS_SELECTOR, "#form, #result, #bars .bar"):
        r = el.rect
        assert r["x"] >= 0 and r["x"] + r["width"] <= width, el.get_attribute("outerHTML")[:80]
    size = browser.execute_script("return parseFloat(getComputedStyle("
                                  "document.getElementById('top-class')).fontSize)")
    assert size >= 40
    camera = browser.find_element(By.ID, "camera")
    assert camera.get_attribute("capture") == "environment"
    shots = Path(os.environ.get("ASLNET_TEST_ARTIFACTS", "/tmp"))
    if os.environ.get("ASLNET_TEST_ARTIFACTS"):
        browser.save_screenshot(str(shots / "phone-400px.png"))


@pytest.mark.parametrize("browser", [False], indirect=True)
def test_without_javascript_the_form_still_works(browser, url, model, shared_dir):
    from selenium.webdriver.common.by import By
    photo = _digit_photo(shared_dir)
    browser.get(url)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    browser.find_element(By.ID, "submit").click()
    assert _wait_for_result(browser) == _expected(model, photo)
    assert "sure" in browser.find_element(By.ID, "top-prob").text
