"""Tests of stemqd.io: calibrated round trips per format, and every bad-input case."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import struct

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from stemqd import files, io
from stemqd.errors import CalibrationError, InputError

PX_A = 0.25  # Å; stored as 0.025 nm, 25 pm or 2.5e-11 m below
RNG = np.random.default_rng(0)


def _frames(n=3, ny=40, nx=48, dtype=np.uint16):
    # non-square frames catch x/y swaps; integers catch dtype handling
    return (RNG.random((n, ny, nx)) * 1000).astype(dtype)


def _assert_stack(stack, frames, px=PX_A, source_contains="metadata"):
    expected = np.asarray(frames, dtype=np.float32)
    if expected.ndim == 2:
        expected = expected[np.newaxis]
    assert stack.frames.dtype == np.float32
    assert stack.frames.shape == expected.shape == stack.shape
    assert stack.n_frames == expected.shape[0]
    np.testing.assert_array_equal(stack.frames, expected)
    assert not stack.frames.flags.writeable
    assert stack.pixel_size_A == pytest.approx(px, rel=1e-6)
    assert source_contains in stack.pixel_size_source
    json.dumps(stack.summary())  # the summary is JSON-able


# --------------------------------------------------------------------------------------
# parse_length


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.25A", 0.25), ("0.25 Å", 0.25), ("0.25Å", 0.25), ("0.25 angstrom", 0.25),
        ("0.025nm", 0.25), ("0.025 nm", 0.25), ("25pm", 0.25), ("0.25", 0.25),
        ("2.5e-5um", 0.25), ("2.5e-5 µm", 0.25), ("2.5e-11m", 0.25), (".25", 0.25), (0.25, 0.25),
    ],
)  # fmt: skip
def test_parse_length(text, expected):
    assert io.parse_length(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "abc", "0", "-0.25A", "0.25 parsec", "nanA", "inf", "0.25 1/nm", "A0.25"]
)
def test_parse_length_rejects(text):
    with pytest.raises(InputError, match="length"):
        io.parse_length(text)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-4, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_parse_length_units_agree(value):
    assert io.parse_length(f"{value!r}nm") == pytest.approx(10 * io.parse_length(f"{value!r}A"))
    assert io.parse_length(f"{value!r} pm") == pytest.approx(io.parse_length(f"{value!r}") / 100)


# --------------------------------------------------------------------------------------
# sha256 and atomic writes


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # several read blocks
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_text_and_bytes(tmp_path):
    files.atomic_write_text(tmp_path / "a.txt", "héllo\n")
    files.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_leaves_old_file_on_error(tmp_path, exc):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(exc):
        with files.atomic_write(path) as fh:
            fh.write("new, half written")
            raise exc()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        files.atomic_write_text(tmp_path / "nope" / "a.txt", "x")


# --------------------------------------------------------------------------------------
# TIFF


@pytest.mark.parametrize("n", [1, 4])
def test_write_stack_tiff_round_trip(tmp_path, n):
    frames = _frames(n).astype(np.float32) / 7
    path = tmp_path / "stack.tif"
    io.write_stack_tiff(path, frames, 0.1234, voltage_kv=300, convergence_mrad=21.4)
    stack = io.load(path)
    _assert_stack(stack, frames, px=0.1234, source_contains="ImageJ")
    assert stack.voltage_kv == 300.0
    assert stack.convergence_mrad == 21.4
    assert stack.path == str(path)
    assert stack.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stack.dtype == "float32"
    # Fiji sees the calibration: ImageJ unit and pixels per nm in the resolution tags
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "nm"
        assert tif.pages[0].resolution[0] == pytest.approx(10 / 0.1234, rel=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["stack.tif"]


def test_write_stack_tiff_single_image_without_optics(tmp_path):
    image = _frames(1)[0]
    io.write_stack_tiff(tmp_path / "one.tif", image, "0.025nm")
    stack = io.load(tmp_path / "one.tif")
    _assert_stack(stack, image)
    assert stack.voltage_kv is None and stack.convergence_mrad is None


@pytest.mark.parametrize(
    "unit, per_unit",
    [("nm", 1 / 0.025), ("micron", 1 / 2.5e-5), ("\\u00B5m", 1 / 2.5e-5), ("A", 4.0)],
)
@pytest.mark.parametrize("n", [1, 3])
def test_imagej_tiff(tmp_path, unit, per_unit, n):
    frames = _frames(n)
    path = tmp_path / "ij.tif"
    axes = "TYX" if n > 1 else "YX"
    data = frames if n > 1 else frames[0]
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(per_unit, per_unit),
        metadata={"axes": axes, "unit": unit},
    )
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="ImageJ")
    assert stack.dtype == "uint16"
    assert stack.metadata["format"] == "TIFF (ImageJ)"


def test_imagej_tiff_pixel_unit_needs_override(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, _frames(1)[0], imagej=True, metadata={"unit": "pixel"})
    with pytest.raises(CalibrationError, match="ij.tif.*--pixel-size 0.25A"):
        io.load(path)


@pytest.mark.parametrize(
    "size, unit", [(0.025, "nm"), (25.0, "pm"), (2.5e-5, None)]
)  # None: OME default µm
def test_ome_tiff(tmp_path, size, unit):
    frames = _frames(3)
    path = tmp_path / "x.ome.tif"
    md = {"axes": "TYX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        md.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    tifffile.imwrite(path, frames, ome=True, metadata=md)
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="OME PhysicalSizeX")


@pytest.mark.parametrize(
    "resunit, per_unit", [("CENTIMETER", 4e8), ("MILLIMETER", 4e7), ("MICROMETER", 4e4)]
)
def test_tiff_resolution_tags(tmp_path, resunit, per_unit):
    image = _frames(1)[0]
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, image, resolution=(per_unit, per_unit), resolutionunit=resunit)
    _assert_stack(io.load(path), image, source_contains="resolution tags")


def test_tiff_dpi_is_not_a_calibration(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, _frames(1)[0], resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(CalibrationError, match="dpi.tif.*dots per inch.*--pixel-size"):
        io.load(path)
    assert io.load(path, pixel_size_A=0.3).pixel_size_A == 0.3


def test_plain_multipage_tiff_with_override(tmp_path):
    frames = _frames(3)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for frame in frames:
            tw.write(frame, photometric="minisblack")
    stack = io.load(path, pixel_size_A="0.3A")
    _assert_stack(stack, frames, px=0.3, source_contains="override")


def test_override_keeps_file_value_in_metadata(tmp_path):
    path = tmp_path / "s.tif"
    io.write_stack_tiff(path, _frames(2), PX_A)
    stack = io.load(path, pixel_size_A=0.3)
    assert stack.pixel_size_A == 0.3 and stack.pixel_size_source == "override"
    assert stack.metadata["pixel_size_A_file"] == pytest.approx(PX_A)


def test_stack_is_frozen(tmp_path):
    path = tmp_path / "s.tif"
    io.write_stack_tiff(path, _frames(2), PX_A)
    stack = io.load(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stack.pixel_size_A = 1.0
    with pytest.raises(ValueError):
        stack.frames[0, 0, 0] = 1.0
    assert stack.field_of_view_A == pytest.approx((40 * PX_A, 48 * PX_A))


# --------------------------------------------------------------------------------------
# NPY


def test_npy_needs_override(tmp_path):
    frames = _frames(2, dtype=np.int32)
    path = tmp_path / "raw.npy"
    np.save(path, frames)
    with pytest.raises(
        CalibrationError, match=r"raw\.npy.*pass --pixel-size, e\.g\. --pixel-size 0\.25A"
    ):
        io.load(path)
    stack = io.load(path, pixel_size_A="25pm")
    _assert_stack(stack, frames, source_contains="override")
    assert stack.pixel_size_source == "override"
    assert stack.dtype == "int32"


# --------------------------------------------------------------------------------------
# HyperSpy and rosettasciio formats


def _hyperspy_signal(frames, title="HAADF"):
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(np.asarray(frames))
    for axis, (name, scale, units) in zip(
        signal.axes_manager._axes,
        [("frame", 1.0, ""), ("y", 0.025, "nm"), ("x", 0.025, "nm")],
        strict=True,
    ):
        axis.name, axis.scale, axis.units = name, scale, units
    signal.metadata.General.title = title
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 300.0)
    signal.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", 21.4)
    return signal


@pytest.mark.parametrize("ext", [".hspy", ".hdf5"])
def test_hspy_round_trip(tmp_path, ext):
    frames = _frames(2).astype(np.float32)
    path = tmp_path / f"s{ext}"
    _hyperspy_signal(frames).save(path, file_format="HSPY")
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="HSPY axis scale, nm")
    assert stack.voltage_kv == 300.0 and stack.convergence_mrad == 21.4
    assert stack.metadata["title"] == "HAADF"


def test_hspy_scale_without_a_unit_says_what_it_would_be(tmp_path):
    """Atomap's test images keep a scale in nm without its unit: not a calibration, but
    the message gives the pixel size it would be."""
    signal = _hyperspy_signal(_frames(1).astype(np.float32))
    for axis in signal.axes_manager.signal_axes:
        axis.scale, axis.units = 0.009326, ""
    path = tmp_path / "atomap.hdf5"
    signal.save(path, file_format="HSPY")
    with pytest.raises(CalibrationError, match=r"scale of 0.009326 but no length unit.*0.09326A"):
        io.load(path)
    assert io.load(path, pixel_size_A="0.09326A").pixel_size_A == pytest.approx(0.09326)


def test_emd_ncem_written_by_rosettasciio(tmp_path):
    frames = _frames(2).astype(np.float32)
    path = tmp_path / "ncem.emd"
    _hyperspy_signal(frames).save(path)
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="EMD (NCEM) axis scale, nm")
    assert stack.metadata["format"] == "EMD (NCEM)"


def test_emd_ncem_by_hand(tmp_path):
    # The Berkeley EMD v0.2 layout: a group with emd_group_type=1 holding `data` and one
    # `dimN` dataset per stored array axis (dim1 = first), units in brackets.
    frames = _frames(3)
    path = tmp_path / "hand.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        f.create_group("microscope").attrs.update(
            {"voltage_kV": 200.0, "convergence_angle_mrad": 25.0}
        )
        group = f.create_group("data/haadf")
        group.attrs["emd_group_type"] = 1
        stored = frames.T  # (x, y, frame): rosettasciio transposes NCEM data on reading
        group.create_dataset("data", data=stored)
        for i, (name, units, step) in enumerate(
            [("x", "[n_m]", 0.025), ("y", "[n_m]", 0.025), ("frame", "", 1.0)]
        ):
            dim = group.create_dataset(f"dim{i + 1}", data=np.arange(stored.shape[i]) * step)
            dim.attrs["name"], dim.attrs["units"] = name, units
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="EMD (NCEM)")
    assert stack.voltage_kv == 200.0 and stack.convergence_mrad == 25.0


def _json_dataset(group, name, obj):
    raw = np.frombuffer(json.dumps(obj).encode(), dtype="uint8")
    group.create_dataset(name, data=raw.reshape(-1, 1))


def write_velox(path, detectors, pixel_size_m=2.5e-11, voltage_v=300e3, convergence_rad=0.0214):
    """A minimal Velox EMD (version 11): Data/Image/<uuid>/{Data (y, x, frame), Metadata (JSON)}."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "Version", data=np.array([json.dumps({"format": "Velox", "version": "11"}).encode()])
        )
        for index, frames in enumerate(detectors.values()):
            group = f.create_group(f"Data/Image/{index:08x}-uuid")
            group.create_dataset(
                "Data", data=np.moveaxis(frames, 0, -1), chunks=frames.shape[1:] + (1,)
            )
            _json_dataset(group, "Metadata", {
                "BinaryResult": {"PixelSize": {"width": str(pixel_size_m), "height": str(pixel_size_m)},
                                 "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"},
                                 "DetectorIndex": str(index)},
                "Detectors": {f"Detector-{i}": {"DetectorName": d} for i, d in enumerate(detectors)},
                "Optics": {"AccelerationVoltage": str(voltage_v), "BeamConvergence": str(convergence_rad)},
                "Scan": {"FrameTime": "1.5"},
                "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
                "Instrument": {"InstrumentClass": "Titan"},
            })  # fmt: skip


@pytest.mark.parametrize("n", [1, 3])
def test_emd_velox(tmp_path, n):
    haadf = _frames(n)
    df4 = _frames(n) + 5
    path = tmp_path / "velox.emd"
    write_velox(path, {"DF4": df4, "HAADF": haadf})
    stack = io.load(path)
    _assert_stack(stack, haadf, source_contains="EMD (Velox)")  # HAADF chosen over DF4
    assert stack.voltage_kv == pytest.approx(300.0)
    assert stack.convergence_mrad == pytest.approx(21.4)
    assert stack.metadata["title"] == "HAADF" and stack.metadata["n_signals"] == 2


def write_ser(path, frames, pixel_size_m=2.5e-11):
    """A minimal TIA .ser image series (SeriesVersion 0x0210: 32-bit offsets, time tags)."""
    frames = np.asarray(frames, dtype="<f4")
    n, ny, nx = frames.shape
    desc = b"Number"
    header = struct.pack("<HHHIIIII", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, n, n, 0)
    header += (
        struct.pack("<I", 1)
        + struct.pack("<IddII", n, 0.0, 1.0, 0, len(desc))
        + desc
        + struct.pack("<I", 0)
    )
    elements = [
        struct.pack("<ddIddIHII", 0.0, pixel_size_m, 0, 0.0, pixel_size_m, 0, 7, nx, ny)
        + frame[::-1].tobytes()
        for frame in frames  # TIA stores rows bottom to top; data type 7 is float32
    ]
    start = len(header) + 8 * n
    data_offsets = np.cumsum([start] + [len(e) for e in elements])
    tag_offsets = data_offsets[-1] + 8 * np.arange(n)
    out = bytearray(header)
    out[22:26] = struct.pack("<I", len(header))  # OffsetArrayOffset
    out += data_offsets[:-1].astype("<u4").tobytes() + tag_offsets.astype("<u4").tobytes()
    out += b"".join(elements) + b"".join(
        struct.pack("<HHI", 0x4152, 0, 1700000000 + i) for i in range(n)
    )
    path.write_bytes(bytes(out))


@pytest.mark.parametrize("n", [1, 3])
def test_ser(tmp_path, n):
    frames = _frames(n).astype(np.float32)
    path = tmp_path / "series.ser"
    write_ser(path, frames)
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="SER axis scale, nm")
    assert stack.dtype == "float32"


def _dm_dict(data, units="nm", scale=0.025, voltage_v=300000.0, microscope_info=None):
    """What rsciio.digitalmicrograph.file_reader returns for a STEM image (trimmed)."""
    tags = "ImageList.TagGroup0.ImageTags"
    info = {"Voltage": voltage_v, "Illumination Mode": "STEM", **(microscope_info or {})}
    axes = [{"name": n, "size": s, "scale": scale, "offset": 0.0, "units": units, "navigate": False}
            for n, s in zip("yx", data.shape[-2:])]  # fmt: skip
    if data.ndim == 3:
        axes.insert(
            0,
            {
                "name": "Z",
                "size": data.shape[0],
                "scale": 1.0,
                "offset": 0.0,
                "units": "",
                "navigate": True,
            },
        )
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": "HAADF", "original_filename": "x.dm4"}, "Signal": {}},
        "original_metadata": {"ImageList": {"TagGroup0": {"ImageTags": {"Microscope Info": info}}}},
        "mapping": {
            f"{tags}.Microscope Info.Voltage": (
                "Acquisition_instrument.TEM.beam_energy",
                lambda x: x / 1e3,
            )
        },
    }


@pytest.fixture
def fake_dm(monkeypatch):
    """Replace the DM reader; no DM3/DM4 files can be written without Gatan software."""
    import rsciio.digitalmicrograph

    def install(*dicts):
        monkeypatch.setattr(
            rsciio.digitalmicrograph, "file_reader", lambda path, lazy=False: list(dicts)
        )

    return install


@pytest.mark.parametrize("ext", [".dm3", ".dm4"])
def test_dm_code_path(tmp_path, fake_dm, ext):
    frames = _frames(3)
    fake_dm(_dm_dict(frames, microscope_info={"STEM Convergence Angle (mrad)": 21.4}))
    path = tmp_path / f"scan{ext}"
    path.write_bytes(b"DM placeholder")
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains=f"{ext[1:].upper()} axis scale, nm")
    assert stack.voltage_kv == 300.0 and stack.convergence_mrad == 21.4


def test_dm_uncalibrated(tmp_path, fake_dm):
    fake_dm(_dm_dict(_frames(1)[0], units="", scale=1.0))
    path = tmp_path / "raw.dm4"
    path.write_bytes(b"x")
    with pytest.raises(CalibrationError, match="raw.dm4.*uncalibrated.*--pixel-size"):
        io.load(path)


def test_dm_reciprocal_units(tmp_path, fake_dm):
    fake_dm(_dm_dict(_frames(1)[0], units="1/nm", scale=0.1))
    path = tmp_path / "fft.dm3"
    path.write_bytes(b"x")
    with pytest.raises(CalibrationError, match="'1/nm', not a length"):
        io.load(path)


def test_dm_rgb(tmp_path, fake_dm):
    rgb = np.zeros((40, 40), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    fake_dm(_dm_dict(rgb))
    path = tmp_path / "colour.dm4"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="colour.dm4.*RGB"):
        io.load(path)


def test_dm_reader_failure_is_input_error(tmp_path):
    path = tmp_path / "broken.dm3"
    path.write_bytes(b"\x00\x00\x00\x03" + b"garbage" * 10)
    with pytest.raises(InputError, match="broken.dm3.*cannot read it as DM3"):
        io.load(path)


def test_zspy_code_path(tmp_path, monkeypatch):
    # rosettasciio 0.15 cannot write ZSPY with zarr 3, so the reader is replaced.
    import rsciio.zspy

    frames = _frames(2).astype(np.float32)
    signal = {
        "data": frames,
        "axes": [{"name": "frame", "scale": 1.0, "units": "", "navigate": True},
                 {"name": "y", "scale": 25.0, "units": "pm", "navigate": False},
                 {"name": "x", "scale": 25.0, "units": "pm", "navigate": False}],
        "metadata": {"General": {"title": "HAADF"},
                     "Acquisition_instrument": {"TEM": {"beam_energy": 300.0, "convergence_angle": 21.4}}},
        "original_metadata": {},
    }  # fmt: skip
    monkeypatch.setattr(rsciio.zspy, "file_reader", lambda path, lazy=False: [signal])
    path = tmp_path / "s.zspy"
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    stack = io.load(path)
    _assert_stack(stack, frames, source_contains="ZSPY axis scale, pm")
    assert stack.voltage_kv == 300.0 and stack.convergence_mrad == 21.4
    assert len(stack.sha256) == 64


def test_to_signal(tmp_path):
    path = tmp_path / "s.tif"
    io.write_stack_tiff(path, _frames(2), PX_A, voltage_kv=200)
    signal = io.to_signal(io.load(path))
    assert signal.data.shape == (2, 40, 48)
    assert [a.scale for a in signal.axes_manager.signal_axes] == pytest.approx([0.025, 0.025])
    assert signal.axes_manager.signal_axes[0].units == "nm"
    assert signal.metadata.Acquisition_instrument.TEM.beam_energy == 200


def test_from_signal_inverts_to_signal(tmp_path):
    path = tmp_path / "s.tif"
    frames = _frames(2)
    io.write_stack_tiff(path, frames, PX_A, voltage_kv=200, convergence_mrad=21.4)
    stack = io.from_signal(io.to_signal(io.load(path)))
    _assert_stack(stack, frames, source_contains="HyperSpy axis scale, nm")
    assert (stack.voltage_kv, stack.convergence_mrad) == (200.0, 21.4)
    assert stack.path == "s.tif"
    # the checksum is of the pixels, so the same pixels always give the same one
    assert stack.sha256 == io.from_array(frames, PX_A).sha256


def test_from_signal_reads_a_hyperspy_image_in_pm(tmp_path):
    frames = _frames(1).astype(np.float32)
    signal = _hyperspy_signal(frames)
    for axis in signal.axes_manager.signal_axes:
        axis.scale, axis.units = PX_A * 100, "pm"
    stack = io.from_signal(signal)
    _assert_stack(stack, frames, source_contains="HyperSpy axis scale, pm")
    assert (stack.voltage_kv, stack.convergence_mrad) == (300.0, 21.4)
    assert stack.path == "HAADF"


def test_from_signal_refuses_what_is_not_a_calibrated_image():
    import hyperspy.api as hs

    uncalibrated = hs.signals.Signal2D(np.ones((40, 40)))
    with pytest.raises(CalibrationError, match="uncalibrated.*pixel_size_A="):
        io.from_signal(uncalibrated)
    assert io.from_signal(uncalibrated, pixel_size_A="0.3A").pixel_size_source == "override"
    with pytest.raises(InputError, match="1 signal axes is not an image"):
        io.from_signal(hs.signals.Signal1D(np.ones((40, 40))))
    with pytest.raises(InputError, match="from_array"):
        io.from_signal(np.ones((40, 40)))


def test_from_array_validates_as_load_does():
    frames = _frames(2)
    stack = io.from_array(frames, "0.025nm", voltage_kv=300, name="dot")
    _assert_stack(stack, frames, source_contains="given")
    assert stack.voltage_kv == 300.0 and stack.convergence_mrad is None
    assert stack.dtype == "uint16" and stack.path == "dot"
    assert stack.sha256 == hashlib.sha256(np.asarray(frames, np.float32).tobytes()).hexdigest()
    assert io.from_array(frames + 1, PX_A).sha256 != stack.sha256
    bad = frames.astype(np.float32)
    bad[1, 3, 4] = np.nan
    with pytest.raises(InputError, match="dot: 1 non-finite pixel.*frame 1 at y=3, x=4"):
        io.from_array(bad, PX_A, name="dot")
    with pytest.raises(InputError, match="array: frames are 8 x 8 px"):
        io.from_array(np.ones((8, 8)), PX_A)


# --------------------------------------------------------------------------------------
# Bad input: the right error class, and the file's name in the message


def _save_npy(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


def _text_tif(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is not an image\n")
    return path


def _truncated_tif(tmp_path):
    path = tmp_path / "cut.tif"
    io.write_stack_tiff(path, _frames(3), PX_A)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_single_tif(tmp_path):
    path = tmp_path / "cut1.tif"
    tifffile.imwrite(path, _frames(1)[0], photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    return path


def _rgb_tif(tmp_path):
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    return path


def _mixed_pages_tif(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((40, 40), np.uint16), photometric="minisblack")
        tw.write(np.zeros((64, 40), np.uint16), photometric="minisblack")
    return path


def _inf_tif(tmp_path):
    frames = _frames(2).astype(np.float32)
    frames[1, 5, 7] = np.inf
    path = tmp_path / "inf.tif"
    io.write_stack_tiff(path, frames, PX_A)
    return path


def _truncated_npy(tmp_path):
    path = _save_npy(tmp_path, "cut.npy", _frames(2))
    path.write_bytes(path.read_bytes()[:200])
    return path


def _nan_npy(tmp_path):
    frames = _frames(2).astype(np.float64)
    frames[0, 3, 4] = np.nan
    return _save_npy(tmp_path, "nan.npy", frames)


def _empty(tmp_path):
    path = tmp_path / "empty.dm4"
    path.touch()
    return path


def _unknown_ext(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_text("1 2 3")
    return path


def _folder(tmp_path):
    path = tmp_path / "folder.tif"
    path.mkdir()
    return path


def _broken_h5(tmp_path):
    path = tmp_path / "broken.hspy"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    return path


def _broken_emd(tmp_path):
    path = tmp_path / "other.emd"
    with h5py.File(path, "w") as f:
        f.create_dataset("something", data=np.zeros(3))
    return path


BAD_INPUTS = {
    "missing": (lambda p: p / "missing.tif", InputError, "no such file"),
    "empty": (_empty, InputError, "empty"),
    "folder": (_folder, InputError, "folder"),
    "unknown extension": (_unknown_ext, InputError, "unsupported file type"),
    "text named .tif": (_text_tif, InputError, "cannot read it as TIFF"),
    "truncated tif": (_truncated_tif, InputError, "truncated"),
    "truncated single-page tif": (_truncated_single_tif, InputError, "truncated"),
    "truncated npy": (_truncated_npy, InputError, "cannot read"),
    "broken hdf5": (_broken_h5, InputError, "cannot read"),
    "emd without data": (_broken_emd, InputError, "cannot read|no data"),
    "rgb tif": (_rgb_tif, InputError, "colour"),
    "1-D": (lambda p: _save_npy(p, "profile.npy", np.ones(100)), InputError, "1-D"),
    "4-D": (lambda p: _save_npy(p, "fourd.npy", np.ones((2, 3, 40, 40))), InputError, "4-D"),
    "0-D": (lambda p: _save_npy(p, "scalar.npy", np.float64(1)), InputError, "0-D"),
    "complex": (
        lambda p: _save_npy(p, "fft.npy", np.ones((40, 40), complex)),
        InputError,
        "complex",
    ),
    "nan": (_nan_npy, InputError, "non-finite"),
    "inf": (_inf_tif, InputError, "non-finite.*frame 1 at y=5, x=7"),
    "beyond float32": (
        lambda p: _save_npy(p, "huge.npy", np.full((40, 40), 1e300)),
        InputError,
        "float32 range",
    ),
    "small frames": (
        lambda p: _save_npy(p, "tiny.npy", np.ones((3, 16, 40))),
        InputError,
        "16 x 40 px.*at least 32",
    ),
    "different page sizes": (_mixed_pages_tif, InputError, "different sizes"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(tmp_path, case):
    make, exc_class, pattern = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(exc_class, match=pattern) as info:
        io.load(path, pixel_size_A=PX_A)  # an override, so calibration is never the complaint
    assert type(info.value) is exc_class
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message


def test_missing_calibration_is_calibration_error(tmp_path):
    path = _save_npy(tmp_path, "frames.npy", _frames(1))
    with pytest.raises(CalibrationError) as info:
        io.load(path)
    assert isinstance(info.value, InputError)
    assert "frames.npy" in str(info.value) and "--pixel-size 0.25A" in str(info.value)


def test_bad_override_is_input_error(tmp_path):
    path = _save_npy(tmp_path, "frames.npy", _frames(1))
    with pytest.raises(InputError, match="length"):
        io.load(path, pixel_size_A="-1nm")


def test_non_square_pixels(tmp_path):
    path = tmp_path / "rect.tif"
    tifffile.imwrite(
        path, _frames(1)[0], imagej=True, resolution=(40.0, 20.0), metadata={"unit": "nm"}
    )
    with pytest.raises(CalibrationError, match="rect.tif.*non-square"):
        io.load(path)
    assert io.load(path, pixel_size_A=0.25).pixel_size_A == 0.25  # an override settles it


def test_write_stack_tiff_uint16_round_trip(tmp_path):
    frames = np.random.default_rng(0).poisson(50, (3, 40, 40)).astype(np.float32)
    path = tmp_path / "counts.tif"
    io.write_stack_tiff(path, frames, 0.2, voltage_kv=300, convergence_mrad=18, dtype="uint16")
    stack = io.load(path)
    assert stack.dtype == "uint16" and np.array_equal(stack.frames, frames)
    assert stack.pixel_size_A == pytest.approx(0.2) and stack.voltage_kv == 300
    with pytest.raises(InputError):
        io.write_stack_tiff(tmp_path / "neg.tif", -frames, 0.2, dtype="uint16")
