"""placeholder"""

def compile(compiler, arguments, pointer):
    raise NotImplementedError
