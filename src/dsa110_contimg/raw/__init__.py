"""The correlator's own files: UVH5 subband files, grouped per observation and converted."""
