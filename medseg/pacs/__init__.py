"""medseg in the PACS loop: a DICOM node and DICOMweb.

config.py       NodeConfig: AE title, port, allowed callers, storage, quiet time, destination (JSON file + options)
destination.py  Destination: AET@host:port (C-STORE) or a DICOMweb root (STOW-RS); AE title and port checks
scu.py          send_cstore: C-STORE files to a DICOM node (SEG and RTSTRUCT presentation contexts)
stow.py         stow_files: STOW-RS files to a DICOMweb server
store.py        SeriesStore: received instances on disk by series, atomically, with each series' status
worker.py       SeriesWorker: segment one stored series with the loaded Segmenter, send its results
node.py         DicomNode: ``medseg serve`` (C-STORE SCP, quiet-time completion, restart-safe)
dicomweb.py     segment_dicomweb_study: ``medseg dicomweb`` (QIDO-RS, WADO-RS, STOW-RS)
uids.py         valid_uid: UIDs checked before they name files
errors.py       PacsError
commands.py     ``medseg serve``, ``medseg dicomweb``
"""
