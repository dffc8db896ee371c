"""Parser of Criteo TSV lines (label, 13 integer, 26 hexadecimal categorical fields).

The Python layer hands over a buffer of whole lines; the loop over its bytes runs without the
GIL. Errors come back as (line, field) positions so the caller can name them.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport log1p
from libc.stdint cimport int64_t, uint64_t

cnp.import_array()

cdef int NUM_DENSE = 13
cdef int NUM_SPARSE = 26

# Error codes of parse_lines_nogil, mapped to messages by parse_lines.
cdef enum:
    OK = 0
    BAD_FIELD_COUNT = 1
    BAD_INTEGER = 2
    BAD_HEX = 3
    BAD_LABEL = 4


cdef int hex_value(unsigned char c) noexcept nogil:
    if c >= c'0' and c <= c'9':
        return c - c'0'
    if c >= c'a' and c <= c'f':
        return c - c'a' + 10
    if c >= c'A' and c <= c'F':
        return c - c'A' + 10
    return -1


cdef int parse_lines_nogil(const unsigned char[::1] buf, const int64_t[::1] rows,
                           float[::1] labels, float[:, ::1] dense, int64_t[:, ::1] cats,
                           Py_ssize_t *bad_line, int *bad_field) noexcept nogil:
    cdef Py_ssize_t pos = 0, n = buf.shape[0], line = 0
    cdef int field, digits
    cdef int64_t ivalue
    cdef uint64_t hvalue
    cdef bint negative
    cdef int h
    cdef unsigned char c
    while pos < n:
        field = 0
        while True:
            # one field: [pos, end of field)
            if field == 0:
                digits = 0
                if pos < n and (buf[pos] == c'0' or buf[pos] == c'1') and (
                        pos + 1 >= n or buf[pos + 1] == c'\t' or buf[pos + 1] == c'\n' or buf[pos + 1] == c'\r'):
                    labels[line] = buf[pos] - c'0'
                    pos += 1
                elif pos < n and buf[pos] != c'\t' and buf[pos] != c'\n':
                    bad_line[0] = line
                    bad_field[0] = 0
                    return BAD_LABEL
                else:
                    labels[line] = 0
            elif field <= NUM_DENSE:
                ivalue = 0
                negative = pos < n and buf[pos] == c'-'
                if negative:
                    pos += 1
                digits = 0
                while pos < n and buf[pos] >= c'0' and buf[pos] <= c'9':
                    ivalue = ivalue * 10 + (buf[pos] - c'0')
                    pos += 1
                    digits += 1
                if (negative and digits == 0) or (pos < n and buf[pos] != c'\t' and buf[pos] != c'\n'
                                                  and buf[pos] != c'\r'):
                    bad_line[0] = line
                    bad_field[0] = field
                    return BAD_INTEGER
                # the DLRM reference reader clips negative counts to 0, then takes log(1 + x)
                dense[line, field - 1] = <float>log1p(<double>ivalue) if (digits and not negative) else 0.0
            else:
                hvalue = 0
                digits = 0
                while pos < n:
                    h = hex_value(buf[pos])
                    if h < 0:
                        break
                    hvalue = (hvalue << 4) | <uint64_t>h
                    pos += 1
                    digits += 1
                if digits > 16 or (pos < n and buf[pos] != c'\t' and buf[pos] != c'\n' and buf[pos] != c'\r'):
                    bad_line[0] = line
                    bad_field[0] = field
                    return BAD_HEX
                cats[field - 1 - NUM_DENSE, line] = <int64_t>(hvalue % <uint64_t>rows[field - 1 - NUM_DENSE])
            field += 1
            if pos < n and buf[pos] == c'\r':
                pos += 1
            if pos >= n or buf[pos] == c'\n':
                break
            pos += 1  # the tab
            if field == 1 + NUM_DENSE + NUM_SPARSE:
                field += 1  # a tab after the last field: too many fields
                break
        if field != 1 + NUM_DENSE + NUM_SPARSE:
            bad_line[0] = line
            bad_field[0] = field
            return BAD_FIELD_COUNT
        pos += 1  # the newline
        line += 1
    return OK


def count_lines(const unsigned char[::1] buf) -> int:
    """Number of lines in ``buf`` (a last line without a newline counts)."""
    cdef Py_ssize_t i, count = 0, n = buf.shape[0]
    with nogil:
        for i in range(n):
            if buf[i] == c'\n':
                count += 1
    if n and buf[n - 1] != c'\n':
        count += 1
    return count


def parse_lines(bytes data, const int64_t[::1] rows):
    """Parse whole Criteo lines.

    Returns ``(labels [n] float32, dense [n, 13] float32 = log1p(max(x, 0)),
    cats [26, n] int64 = int(hex) % rows[t])`` or raises ``ValueError(line, message)`` with the
    0-based line number inside ``data``.
    """
    cdef const unsigned char[::1] buf = data
    cdef Py_ssize_t n = count_lines(buf)
    labels = np.zeros(n, np.float32)
    dense = np.zeros((n, NUM_DENSE), np.float32)
    cats = np.zeros((NUM_SPARSE, n), np.int64)
    cdef float[::1] lv = labels
    cdef float[:, ::1] dv = dense
    cdef int64_t[:, ::1] cv = cats
    cdef Py_ssize_t bad_line = 0
    cdef int bad_field = 0, status
    with nogil:
        status = parse_lines_nogil(buf, rows, lv, dv, cv, &bad_line, &bad_field)
    if status == BAD_FIELD_COUNT:
        raise ValueError(bad_line, f"expected {1 + NUM_DENSE + NUM_SPARSE} tab-separated fields, "
                                   f"got {'more' if bad_field > NUM_DENSE + NUM_SPARSE else bad_field}")
    if status == BAD_LABEL:
        raise ValueError(bad_line, "the label (field 1) must be 0, 1 or empty")
    if status == BAD_INTEGER:
        raise ValueError(bad_line, f"field {bad_field + 1} (I{bad_field}) is not an integer")
    if status == BAD_HEX:
        raise ValueError(bad_line, f"field {bad_field + 1} (C{bad_field - NUM_DENSE}) is not a "
                                   "hexadecimal id of at most 16 digits")
    return labels, dense, cats
